// Progressive enhancement only: every page works without this file.

for (const el of document.querySelectorAll(".js-hidden")) el.hidden = true;

// The language selector submits itself when picked with a pointer. From the keyboard the
// arrows fire "change" on every step in some browsers, which would reload the page at the
// first key press: keyboard users get the form's button back and submit with Enter or it.
for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  let byKeyboard = false;
  const button = select.form.querySelector("button[type=submit]");
  select.addEventListener("pointerdown", () => { byKeyboard = false; });
  select.addEventListener("keydown", (event) => {
    byKeyboard = true;
    if (button) button.hidden = false;
    if (event.key === "Enter") {
      event.preventDefault();
      select.form.requestSubmit();
    }
  });
  select.addEventListener("change", () => {
    if (!byKeyboard) select.form.requestSubmit();
  });
}

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
