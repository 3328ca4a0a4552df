// coldsend dashboard: refreshes every element marked data-live="<url>" every few seconds
// with the fragment the server renders for that URL. Everything else is plain HTML forms.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  function refresh(el) {
    // Never replace a part the user is typing in or has focused.
    if (el.contains(document.activeElement) && document.activeElement !== document.body) return;
    fetch(el.getAttribute("data-live"), { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          el.innerHTML = html;
          el.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* offline for a moment: try again next period */ });
  }
  function tick() {
    if (document.hidden) return;
    document.querySelectorAll("[data-live]").forEach(refresh);
  }
  document.addEventListener("DOMContentLoaded", function () { setInterval(tick, PERIOD_MS); });
})();
