// The third-party candidates, bundled by bench/run.mjs with esbuild from the
// published npm packages (production React, as an app would ship it).
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { flushSync } from "react-dom";
import { useIdleTimer } from "react-idle-timer";
import idleTimeout from "idle-timeout";

// react-idle-timer 5: the hook inside a React root, default options (events on
// document, capture + passive, 200 ms throttle) and a long timeout.
export function attachReactIdleTimer(timeout) {
  const host = document.createElement("div");
  document.body.append(host);
  const root = createRoot(host);
  function Watcher() {
    useIdleTimer({ timeout, onIdle() {} });
    return null;
  }
  flushSync(() => root.render(createElement(Watcher)));
  return () => {
    root.unmount();
    host.remove();
  };
}

// idle-timeout 2.5: defaults (listeners on document.body, bubble phase).
export function attachIdleTimeout(timeout) {
  const t = idleTimeout(() => {}, { timeout });
  return () => t.destroy();
}

export const versions = {
  react: __REACT_VERSION__,
  "react-idle-timer": __RIT_VERSION__,
  "idle-timeout": __IT_VERSION__,
};
