"use strict";
const log = document.getElementById("log"), statusEl = document.getElementById("status");
const micBtn = document.getElementById("mic"), cancelBtn = document.getElementById("cancel");
const textIn = document.getElementById("text");
const INPUT_RATE = 16000;
// Message types and error codes come from the gateway (generated from gateway/events.py), not from
// strings copied here: CLIENT.SESSION_START is "session.start", and a name the protocol does not have
// throws at once instead of silently never matching.
let CLIENT, SERVER, ERROR;
function names(list) {
  const table = Object.fromEntries(list.map(name => [name.toUpperCase().replace(/\./g, "_"), name]));
  return new Proxy(table, {get(t, key) {
    if (typeof key !== "string" || key in t) return t[key];
    throw new Error(`the Echo protocol has no ${key}`);
  }});
}
async function loadProtocol() {
  const reply = await fetch("/v1/protocol.schema.json");
  if (!reply.ok) throw new Error(`GET /v1/protocol.schema.json: HTTP ${reply.status}`);
  const schema = await reply.json();
  CLIENT = names(schema.client_types); SERVER = names(schema.server_types); ERROR = names(schema.error_codes);
}
// The API key: ?token=... in the link `make run` prints, then kept in this browser. It goes with
// every request (Authorization header) and with the WebSocket (access_token: browsers cannot set
// headers on a WebSocket).
const TOKEN_KEY = "echo.token";
function takeToken() {
  const url = new URL(location.href), fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    localStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return localStorage.getItem(TOKEN_KEY) || "";
}
let token = takeToken();
function authHeaders() { return token ? {Authorization: `Bearer ${token}`} : {}; }
function askForToken(message) {
  setStatus(message);
  document.getElementById("signin").hidden = false;
}
document.getElementById("signin").onsubmit = (e) => {
  e.preventDefault();
  token = document.getElementById("token").value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  document.getElementById("signin").hidden = true;
  connect();
};
function send(message) { ws.send(JSON.stringify(message)); }
let ws, outRate = 22050, playCtx, playHead = 0, replyStartedAt = null, currentTurn = null;
let micCtx, micStream, micNode, partialEl = null, echoEl = null, sources = [];

function add(cls, text) {
  const el = document.createElement("div"); el.className = cls; el.textContent = text;
  log.appendChild(el); log.scrollTop = log.scrollHeight; return el;
}
function setStatus(text) { statusEl.textContent = text; }

function stopPlayback() {
  for (const s of sources) { try { s.stop(); } catch (e) {} }
  sources = []; if (playCtx) playHead = playCtx.currentTime;
}

function playPcm(buf) {
  if (!playCtx) playCtx = new AudioContext();
  const pcm = new Int16Array(buf), f32 = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) f32[i] = pcm[i] / 32768;
  const audio = playCtx.createBuffer(1, f32.length, outRate); audio.copyToChannel(f32, 0);
  const src = playCtx.createBufferSource(); src.buffer = audio; src.connect(playCtx.destination);
  // Gapless: each frame starts exactly where the previous one ends.
  playHead = Math.max(playHead, playCtx.currentTime + 0.05);
  if (replyStartedAt === null) replyStartedAt = playHead;
  src.start(playHead); playHead += audio.duration; sources.push(src);
  src.onended = () => { sources = sources.filter(s => s !== src); };
}

function reportPlayback() {
  if (ws && ws.readyState === 1 && currentTurn && replyStartedAt !== null && playCtx) {
    const ms = Math.max(0, (playCtx.currentTime - replyStartedAt) * 1000);
    send({type: CLIENT.PLAYBACK_POSITION, turn_id: currentTurn, ms: Math.round(ms)});
  }
}
setInterval(reportPlayback, 250);

function onEvent(ev) {
  switch (ev.type) {
    case SERVER.SESSION_STARTED:
      outRate = ev.output_audio.sample_rate;
      setStatus(`Connected · conversation ${ev.conversation_id.slice(0, 8)}`);
      micBtn.disabled = false; textIn.disabled = false; break;
    case SERVER.SPEECH_STARTED:
      stopPlayback(); setStatus("Listening…"); break;
    case SERVER.SPEECH_STOPPED: setStatus("Thinking…"); break;
    case SERVER.TRANSCRIPT_PARTIAL:
      if (!partialEl) partialEl = add("you partial", "");
      partialEl.textContent = ev.text; break;
    case SERVER.TRANSCRIPT_FINAL:
      if (partialEl) { partialEl.remove(); partialEl = null; }
      if (ev.text) add("you", ev.text); else setStatus("Ready");  // nothing heard: no reply follows
      break;
    case SERVER.RESPONSE_TEXT_DELTA:
      if (!echoEl || echoEl.dataset.turn !== ev.turn_id) { echoEl = add("echo", ""); echoEl.dataset.turn = ev.turn_id; }
      echoEl.textContent += ev.delta; cancelBtn.disabled = false; break;
    case SERVER.RESPONSE_AUDIO_START:
      currentTurn = ev.turn_id; replyStartedAt = null; outRate = ev.sample_rate; setStatus("Speaking…"); break;
    case SERVER.RESPONSE_DONE:
      cancelBtn.disabled = true; reportPlayback();
      if (ev.interrupted && echoEl) { echoEl.textContent = ev.text; echoEl.classList.add("interrupted"); stopPlayback(); }
      if (ev.timings_ms) add("timings", Object.entries(ev.timings_ms).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(" · "));
      echoEl = null; setStatus("Ready"); break;
    case SERVER.ERROR:
      add("error", `${ev.code}: ${ev.message}`);
      // A failed transcription gets no reply (docs/protocol.md): stop waiting for one.
      if ([ERROR.STT_UNAVAILABLE, ERROR.STT_TIMEOUT, ERROR.STT_ERROR].includes(ev.code)) {
        if (partialEl) { partialEl.remove(); partialEl = null; }
        setStatus("Ready");
      }
      break;
  }
}

function connect() {
  if (!token) { askForToken("Sign in with your Echo API key (echo-voice keys create, or the link make run printed)"); return; }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/v1/voice?access_token=${encodeURIComponent(token)}`);
  let opened = false;
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { opened = true; startSession(); };
  ws.onmessage = (m) => typeof m.data === "string" ? onEvent(JSON.parse(m.data)) : playPcm(m.data);
  ws.onclose = () => {
    micBtn.disabled = textIn.disabled = true;
    // A refused upgrade (bad or revoked key) never opens: ask for a key instead of a reload.
    if (!opened) { askForToken("The server refused this API key: enter another"); return; }
    setStatus("Disconnected — reload to reconnect");
  };
}
function startSession() {
  send({type: CLIENT.SESSION_START,
    audio: {encoding: "pcm_s16le", sample_rate: INPUT_RATE, channels: 1}});
}

async function startMic() {
  micStream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true, noiseSuppression: true, channelCount: 1}});
  micCtx = new AudioContext();
  await micCtx.audioWorklet.addModule("/static/mic-worklet.js");
  micNode = new AudioWorkletNode(micCtx, "down");
  micNode.port.onmessage = (m) => { if (ws.readyState === 1) ws.send(m.data); };
  micCtx.createMediaStreamSource(micStream).connect(micNode);
  micBtn.classList.add("on"); micBtn.textContent = "Stop talking"; setStatus("Listening…");
}
function stopMic() {
  if (micStream) micStream.getTracks().forEach(t => t.stop());
  if (micCtx) micCtx.close();
  micStream = micCtx = null; micBtn.classList.remove("on"); micBtn.textContent = "Start talking";
}

micBtn.onclick = async () => {
  if (!playCtx) playCtx = new AudioContext();
  try { micStream ? stopMic() : await startMic(); } catch (e) { add("error", `microphone: ${e.message}`); }
};
cancelBtn.onclick = () => { stopPlayback(); reportPlayback(); send({type: CLIENT.RESPONSE_CANCEL}); };
textIn.onkeydown = (e) => {
  if (e.key === "Enter" && textIn.value.trim()) {
    if (!playCtx) playCtx = new AudioContext();
    stopPlayback(); add("you", textIn.value);
    send({type: CLIENT.INPUT_TEXT, text: textIn.value}); textIn.value = "";
  }
};
loadProtocol().then(connect, (e) => setStatus(`Could not load the protocol: ${e.message}`));
