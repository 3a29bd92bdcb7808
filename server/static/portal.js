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
  // An upload shows its progress; the server's answer (the page after the
  // upload, or the refusal) then replaces the page, as the plain form would.
  for (const form of document.querySelectorAll("form[data-upload-progress]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const bar = form.querySelector("progress");
      const status = form.querySelector("[data-upload-status]");
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      bar.hidden = false;
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        bar.max = e.total;
        bar.value = e.loaded;
        status.textContent = form.dataset.progressText.replace("{1}", Math.floor((100 * e.loaded) / e.total));
      });
      xhr.upload.addEventListener("load", () => {
        status.textContent = form.dataset.checkingText;
      });
      xhr.addEventListener("load", () => {
        const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
        document.title = page.title;
        document.body.replaceWith(document.importNode(page.body, true));
        if (xhr.responseURL) history.replaceState(null, "", xhr.responseURL);
      });
      xhr.addEventListener("error", () => {
        button.disabled = false;
        status.textContent = form.dataset.failedText;
      });
      xhr.send(new FormData(form));
    });
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
  // A part of the page that is waiting on terminals (an install on its way)
  // refreshes itself every few seconds while the page is open.
  for (const part of document.querySelectorAll("[data-refresh-every]")) {
    const seconds = Math.max(2, Number(part.dataset.refreshEvery) || 10);
    const refresh = () => {
      fetch(window.location.href, { credentials: "same-origin" })
        .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
        .then((html) => {
          const fresh = new DOMParser().parseFromString(html, "text/html").getElementById(part.id);
          const current = document.getElementById(part.id);
          if (!fresh || !current) return;
          // Keep what the user ticked meanwhile.
          const ticked = new Set(Array.from(current.querySelectorAll("input[type=checkbox]:checked"), (b) => b.value));
          for (const box of fresh.querySelectorAll("input[type=checkbox]")) box.checked = ticked.has(box.value);
          current.replaceWith(document.importNode(fresh, true));
          if (fresh.hasAttribute("data-refresh-every")) setTimeout(refresh, seconds * 1000);
        })
        .catch(() => setTimeout(refresh, seconds * 4000));
    };
    setTimeout(refresh, seconds * 1000);
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
