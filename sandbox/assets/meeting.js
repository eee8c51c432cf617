// The eyeson sandbox's meeting page: joins with the real eyeson JS SDK,
// loaded before this script (`window.eyeson` is the UMD module namespace).
// The access key (links.gui) or guest token (links.guest_join) comes from the
// page's data attributes; the SDK talks to this origin.
"use strict";
(() => {
  const main = document.getElementById("meeting");
  if (!main) return; // a notice page
  const status = document.getElementById("status");
  const say = (text, state) => {
    status.textContent = text;
    main.dataset.state = state;
  };
  const sdk = window.eyeson && window.eyeson.default;
  if (!sdk) {
    say("The eyeson JS SDK did not load.", "error");
    return;
  }
  sdk.config.api = location.origin;
  sdk.onEvent((event) => {
    switch (event.type) {
      case "accept":
        document.getElementById("remote").srcObject = event.remoteStream || null;
        say("You are in the meeting.", "joined");
        break;
      case "exit":
        say("The meeting has ended.", "ended");
        break;
      case "error":
        say(`The meeting failed (${event.name}).`, "error");
        break;
      case "connection":
        if (event.connectionStatus === "access_denied" || event.connectionStatus === "transport_error") {
          say(`Could not join (${event.connectionStatus}).`, "error");
        }
        break;
      case "room_update":
        if (event.content && event.content.shutdown) say("The meeting has ended.", "ended");
        break;
    }
  });
  const start = (accessKey) => {
    say("Joining…", "joining");
    sdk.start(accessKey);
  };

  if (main.dataset.accessKey) {
    start(main.dataset.accessKey);
    return;
  }
  const form = document.getElementById("guest");
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const name = form.elements.name.value.trim();
    if (!name) return;
    form.querySelector("button").disabled = true;
    say("Joining…", "joining");
    try {
      const res = await fetch(`/guests/${encodeURIComponent(main.dataset.guestToken)}`, {
        method: "POST",
        body: new URLSearchParams({ name }),
      });
      if (res.status !== 201) {
        say(res.status === 410 ? "No meeting is running for this link." : `Could not join (HTTP ${res.status}).`, "error");
        form.querySelector("button").disabled = false;
        return;
      }
      const room = await res.json();
      form.hidden = true;
      start(room.access_key);
    } catch (e) {
      say(`Could not join (${e.message}).`, "error");
      form.querySelector("button").disabled = false;
    }
  });
})();
