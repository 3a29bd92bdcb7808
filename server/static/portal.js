// The portal's own small script. Every page works without it; it only
// spares a click or a mistake.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Filter forms marked data-autosubmit apply a choice as soon as it is made.
  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    for (const select of form.querySelectorAll("select")) {
      select.addEventListener("change", () => form.requestSubmit());
    }
  }
  // A long period's totals take their own request: fetched into the page,
  // which is shown at once without them.
  for (const slot of document.querySelectorAll("[data-load-into]")) {
    fetch(slot.dataset.loadInto, { credentials: "same-origin" })
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        const totals = new DOMParser().parseFromString(html, "text/html").getElementById("totals");
        if (totals) {
          slot.replaceWith(document.importNode(totals, true));
        }
      })
      .catch(() => {});
  }
  // A form that failed: move focus to its message so screen readers say it.
  const alert = document.querySelector("main [role=alert]");
  if (alert) {
    alert.setAttribute("tabindex", "-1");
    alert.focus();
  }
  // A form is sent once: a second click while the page loads does nothing.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", () => {
      for (const button of form.querySelectorAll("button[type=submit]")) {
        setTimeout(() => { button.disabled = true; }, 0);
      }
    });
  }
});
