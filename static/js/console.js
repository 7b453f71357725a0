// Small enhancements for the console; every page works without them.
// - Copy buttons: <button data-copy-target="ID" hidden> copies the text of #ID and says so in the next
//   [role=status] sibling. The buttons stay hidden without JavaScript (nothing to copy with).
// - Launch form: the estimated cost follows the chosen instance type (its radio's data-price).
(function () {
  "use strict";

  function reveal(root) {
    root.querySelectorAll("[data-copy-target], [data-js-only]").forEach(function (el) {
      el.hidden = false;
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "absolute";
      area.style.left = "-9999px";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) { return; }
    var status = button.parentElement.querySelector("[role=status]");
    copyText(source.textContent.trim()).then(function () {
      if (status) { status.textContent = "Copied."; }
    }, function () {
      if (status) { status.textContent = "Could not copy; select the text and copy it."; }
    });
  });

  function updateEstimate() {
    var output = document.getElementById("estimate");
    var chosen = document.querySelector("input[name=instance_type]:checked");
    if (output) { output.textContent = chosen ? chosen.getAttribute("data-price") : "—"; }
  }

  document.addEventListener("change", function (event) {
    if (event.target.name === "instance_type") { updateEstimate(); }
  });

  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  document.addEventListener("htmx:afterSwap", function () {
    reveal(document);
    updateEstimate();
  });
}());
