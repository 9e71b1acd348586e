// invoicer dashboard: the little the pages need beyond htmx (no inline scripts:
// the Content-Security-Policy allows only our own files).
(function () {
  "use strict";

  // <form data-confirm="..."> asks before it acts.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // A "select all" checkbox ticks every row of its table.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[data-select-all]")) return;
    var table = box.closest("table");
    table.querySelectorAll("input[name=key]").forEach(function (row) { row.checked = box.checked; });
  });

  // When a live update fails (Redis down, session expired), say so instead of going quiet.
  function show(text, isError) {
    var flash = document.getElementById("flash");
    if (!flash) return;
    flash.textContent = text;
    flash.hidden = false;
    flash.classList.toggle("error", !!isError);
  }
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var message = "live update failed (HTTP " + xhr.status + ")";
    try { message = JSON.parse(xhr.responseText).error.message; } catch (e) { /* not JSON */ }
    show(message + "; retrying", true);
  });
  document.addEventListener("htmx:sendError", function () {
    show("the server does not answer; retrying", true);
  });
  document.addEventListener("htmx:afterSwap", function () {
    var flash = document.getElementById("flash");
    if (flash && flash.classList.contains("error")) { flash.hidden = true; flash.classList.remove("error"); }
  });
})();
