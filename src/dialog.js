// The built-in "Are you still there?" dialog's DOM. The guard (Rust) decides
// when it opens and closes and which number it shows; this file only renders.
//
// It lives in a shadow root, so the page's CSS cannot break it and its CSS
// cannot leak into the page. It is an alertdialog: focus moves to its one
// button and stays there, Escape and Enter answer it, and the countdown is
// an aria-live region.

const HTML = `<style>
:host{all:initial;position:fixed;inset:0;z-index:2147483647;display:grid;place-items:center;background:rgba(0,0,0,.5);font:16px/1.5 system-ui,sans-serif}
div{box-sizing:border-box;max-width:min(24rem,calc(100vw - 2rem));padding:1.5rem;border-radius:.75rem;background:#fff;color:#1b1b1f;box-shadow:0 .5rem 2rem rgba(0,0,0,.35)}
h2{margin:0 0 .5rem;font-size:1.25rem}p{margin:0 0 1.25rem}
button{font:inherit;font-weight:600;padding:.6rem 1.2rem;border:0;border-radius:.5rem;background:#1f5fd1;color:#fff;cursor:pointer}
button:focus-visible{outline:3px solid #f5b400;outline-offset:2px}
@media (prefers-color-scheme:dark){div{background:#25262b;color:#f1f1f4}}
</style><div role="alertdialog" aria-modal="true" aria-labelledby="t" aria-describedby="d">
<h2 id="t">Are you still there?</h2>
<p id="d">You will leave the meeting in <span aria-live="polite" aria-atomic="true"><span id="c"></span> <span id="u">seconds</span></span>.</p>
<button type="button" id="b">I'm still here</button></div>`;

export class GuardDialog {
  // Throws if the document has no body yet (the guard then shows none).
  constructor(answer) {
    const host = (this.host = document.createElement("div"));
    host.setAttribute("data-eyeson-guard-dialog", "");
    const root = host.attachShadow({ mode: "open" });
    root.innerHTML = HTML;
    const button = root.getElementById("b");
    this.count = root.getElementById("c");
    this.unit = root.getElementById("u");
    button.addEventListener("click", answer);
    host.addEventListener("keydown", (e) => {
      if (e.key === "Escape" || e.key === "Enter") {
        e.preventDefault(); // Enter would also click the button: answer once
        answer();
      } else if (e.key === "Tab") {
        e.preventDefault(); // aria-modal: keep focus inside
        button.focus();
      }
    });
    this.before = document.activeElement;
    document.body.append(host);
    button.focus();
  }

  // Whole seconds left, computed by the guard from the deadline.
  show(seconds) {
    this.count.textContent = seconds;
    this.unit.textContent = seconds === 1 ? "second" : "seconds";
  }

  // Removes the dialog and gives focus back to where it was.
  close() {
    const hadFocus = document.activeElement === this.host;
    this.host.remove();
    if (hadFocus && this.before && this.before.focus) this.before.focus();
  }
}
