// Live updates for the grayops web view. The page reads fully without this script (it refreshes itself every
// 30 s); with it, /events says when the record changed and the live parts of the page are fetched again and
// swapped in place, keeping the keyboard focus and the open <details>.
(function () {
  "use strict";
  var body = document.body;
  if (!window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var status = document.getElementById("live");
  var busy = false;
  var pending = false;

  function say(text) { if (status) { status.textContent = text; } }

  function focusKey(element) {
    if (!element || element === document.body) { return null; }
    if (element.id) { return "#" + CSS.escape(element.id); }
    var href = element.getAttribute("href");
    return href ? "a[href=\"" + CSS.escape(href) + "\"]" : null;
  }

  function swap(doc) {
    var key = focusKey(document.activeElement);
    var open = Array.prototype.map.call(document.querySelectorAll("details[open][id]"), function (d) { return d.id; });
    Array.prototype.forEach.call(document.querySelectorAll("[data-live][id]"), function (element) {
      var fresh = doc.getElementById(element.id);
      if (fresh) { element.innerHTML = fresh.innerHTML; }
    });
    open.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
    if (key) {
      var again = document.querySelector(key);
      if (again) { again.focus({preventScroll: true}); }
    }
    body.setAttribute("data-revision", doc.body.getAttribute("data-revision") || "");
    body.setAttribute("data-updates", String(Number(body.getAttribute("data-updates") || "0") + 1));
    document.title = doc.title;
  }

  function refresh() {
    if (busy) { pending = true; return; }
    busy = true;
    fetch(window.location.href, {headers: {"X-Grayops-Live": "1"}, cache: "no-store", credentials: "same-origin"})
      .then(function (response) { return response.text(); })
      .then(function (html) {
        swap(new DOMParser().parseFromString(html, "text/html"));
        say("Live: updated at " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("Live: the update failed; it is tried again at the next change."); })
      .then(function () { busy = false; if (pending) { pending = false; refresh(); } });
  }

  var events = new EventSource(body.getAttribute("data-events"));
  events.addEventListener("hello", function (event) {
    say("Live: updates arrive as the record changes.");
    if (JSON.parse(event.data).revision !== body.getAttribute("data-revision")) { refresh(); }
  });
  events.addEventListener("changed", function (event) {
    if (JSON.parse(event.data).revision !== body.getAttribute("data-revision")) { refresh(); }
  });
  events.onerror = function () { say("Live: reconnecting…"); };
}());
