// Lethe console: refreshes the live part of a request page. No inline script anywhere (CSP script-src 'self').
// An element with data-poll="URL" is replaced by the HTML fragment at URL every data-poll-seconds seconds
// until the fragment says the request is finished (data-terminal="true"); then the page reloads once to show
// the results. An ended session (401) goes to the sign-in page.
(function () {
  "use strict";

  function poll(box) {
    var url = box.getAttribute("data-poll");
    var seconds = parseFloat(box.getAttribute("data-poll-seconds") || "2");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "X-Console-Poll": "1" } })
        .then(function (response) {
          if (response.status === 401) {
            window.location.assign("/console/sign-in?next=" + encodeURIComponent(window.location.pathname));
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null) {
            window.setTimeout(tick, seconds * 4000);
            return;
          }
          box.innerHTML = html;
          var facts = box.querySelector("[data-terminal]");
          if (facts && facts.getAttribute("data-terminal") === "true") {
            window.location.reload();
            return;
          }
          window.setTimeout(tick, seconds * 1000);
        })
        .catch(function () { window.setTimeout(tick, seconds * 4000); });
    }
    window.setTimeout(tick, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < boxes.length; i++) { poll(boxes[i]); }
  });
})();
