// Stands in for the eyeson SDK's script tag: window.eyeson is the module
// namespace and the SDK is its `default`, as with the real UMD bundle. It
// records what the guard sends and throws like the SDK on a second send.
(function () {
  const listeners = new Set();
  let connected = true;
  const sdk = {
    sent: [],
    onEvent(fn) { listeners.add(fn); },
    offEvent(fn) { if (fn === undefined) throw new Error("offEvent() without an argument"); listeners.delete(fn); },
    send(msg) {
      if (!connected) throw new TypeError("not connected");
      sdk.sent.push(JSON.parse(JSON.stringify(msg)));
      if (msg.type === "session_termination") { connected = false; listeners.clear(); }
    },
    emit(event) { for (const fn of [...listeners]) fn(event); },
    listenerCount() { return listeners.size; },
  };
  window.eyeson = { __esModule: true, default: sdk };
})();
