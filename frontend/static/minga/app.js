// Progressive enhancement only: every page works without this file.

// The language selector submits itself when JavaScript is on (its button is for no-JS).
for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}
for (const el of document.querySelectorAll(".js-hidden")) el.hidden = true;

// Small screens: the navigation folds behind a Menu button.
const toggle = document.querySelector(".nav-toggle");
const links = document.getElementById("nav-links");
if (toggle && links) {
  toggle.hidden = false;
  document.documentElement.classList.add("js");
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    links.classList.toggle("open", open);
  });
}

// A newly created secret can be copied with one click.
for (const el of document.querySelectorAll("[data-copy]")) {
  el.tabIndex = 0;
  el.title = el.dataset.copyLabel || "";
  el.addEventListener("click", () => navigator.clipboard?.writeText(el.textContent.trim()));
}
