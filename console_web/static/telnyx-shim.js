// Sandbox softphone: the subset of @telnyx/webrtc's TelnyxRTC that the console uses, over the simulated
// carrier's /_sim/rtc socket (JSON frames, no media). Same names and call states as the SDK, so the console
// has one code path: new TelnyxRTC({login_token, host}), connect(), on('telnyx.ready' | 'telnyx.error' |
// 'telnyx.notification' | 'telnyx.socket.close'), newCall({destinationNumber}), and on a call answer(),
// hangup(), muteAudio(), unmuteAudio(), hold(), unhold(), dtmf(), with state new -> trying -> ringing ->
// active -> hangup -> destroy (held while on hold).

class ShimCall {
  constructor(client, id, direction, remote) {
    this.client = client;
    this.id = id;
    this.direction = direction;
    this.state = "new";
    this.isAudioMuted = false;
    this.cause = null;
    this.options = { remoteCallerNumber: remote, destinationNumber: remote };
  }

  _set(state) {
    this.state = state;
    this.client._emit("telnyx.notification", { type: "callUpdate", call: this });
  }

  answer() { this.client._send({ type: "answer", call_id: this.id }); }
  hangup() { this.client._send({ type: "hangup", call_id: this.id }); }
  dtmf(digits) { this.client._send({ type: "dtmf", call_id: this.id, digits: String(digits) }); }
  muteAudio() { this.isAudioMuted = true; this.client._send({ type: "mute", call_id: this.id }); }
  unmuteAudio() { this.isAudioMuted = false; this.client._send({ type: "unmute", call_id: this.id }); }
  toggleAudioMute() { this.isAudioMuted ? this.unmuteAudio() : this.muteAudio(); }
  hold() { this.client._send({ type: "hold", call_id: this.id }); this._set("held"); return Promise.resolve(); }
  unhold() { this.client._send({ type: "unhold", call_id: this.id }); this._set("active"); return Promise.resolve(); }
}

export class TelnyxRTC {
  constructor(options) {
    this.options = options;
    this.calls = {};
    this.handlers = {};
    this.connected = false;
  }

  on(event, handler) { (this.handlers[event] ||= []).push(handler); return this; }
  off(event) { delete this.handlers[event]; return this; }
  _emit(event, payload) { for (const handler of this.handlers[event] || []) handler(payload); }

  connect() {
    const socket = new WebSocket(this.options.host);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "login", login_token: this.options.login_token }));
    socket.onmessage = (event) => this._frame(JSON.parse(event.data));
    socket.onerror = () => this._emit("telnyx.error", { error: { message: "softphone connection failed" } });
    socket.onclose = () => {
      this.connected = false;
      for (const call of Object.values(this.calls)) call._set("destroy");
      this.calls = {};
      this._emit("telnyx.socket.close", {});
    };
    return Promise.resolve();
  }

  disconnect() { this.socket?.close(); }

  newCall({ destinationNumber }) {
    const id = crypto.randomUUID();
    const call = new ShimCall(this, id, "outbound", destinationNumber);
    this.calls[id] = call;
    this._send({ type: "invite", call_id: id, destination: destinationNumber });
    call._set("trying");
    return call;
  }

  _send(frame) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  _frame(frame) {
    if (frame.type === "ready") {
      this.connected = true;
      this._emit("telnyx.ready", { sipUsername: frame.sip_username });
    } else if (frame.type === "error") {
      this._emit("telnyx.error", { error: { code: frame.code, message: frame.message } });
    } else if (frame.type === "call") {
      let call = this.calls[frame.call_id];
      if (!call) call = this.calls[frame.call_id] = new ShimCall(this, frame.call_id, frame.direction, frame.remote);
      const state = { bridged: "active" }[frame.state] || frame.state;
      if (state === "hangup") {
        call.cause = frame.cause || null;
        call._set("hangup");
        delete this.calls[frame.call_id];
        call._set("destroy");
      } else if (!(call.state === "held" && state === "active")) {
        call._set(state);
      }
    }
  }
}
