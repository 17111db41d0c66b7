"use strict";
// Runs in the AudioWorklet: the mic's native rate down to 16 kHz pcm_s16le, in 20 ms frames.
class Down extends AudioWorkletProcessor {
  constructor() { super(); this.ratio = sampleRate / 16000; this.pos = 0; this.out = []; }
  process(inputs) {
    const ch = inputs[0][0]; if (!ch) return true;
    for (; this.pos < ch.length; this.pos += this.ratio) {
      const s = Math.max(-1, Math.min(1, ch[Math.floor(this.pos)]));
      this.out.push(s < 0 ? s * 32768 : s * 32767);
    }
    this.pos -= ch.length;
    if (this.out.length >= 320) { this.port.postMessage(Int16Array.from(this.out).buffer); this.out = []; }
    return true;
  }
}
registerProcessor("down", Down);
