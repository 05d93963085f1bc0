// The thread page, live: renders frames from the realtime gateway into the server-rendered page.
// Live messages take the structure forums/message_markup.py writes for the page (ADR 0015).
// Progressive enhancement: without this file the page reads, posts and pages back by itself.
//
// - Messages: `message.created` for this thread is added in seq order, once (ids already on the
//   page or already rendered are skipped; realtime.js also drops repeats and orders by seq).
//   Edits, deletions, hiding and reactions update the message in place, live or replayed after a
//   reconnect (realtime.js resubscribes with the last change applied; frames replace, so a
//   replayed one is harmless).
// - "New messages": a divider before the first message that arrives while the tab is hidden;
//   the thread is marked read when the member sees the newest message.
// - Compose: sent over the socket with the form's server-made client_id, so a fallback form
//   post of the same text makes no second message; errors are shown on the form, the text kept.
// - Typing and presence lines, mention autocomplete (@handle) against the room's members
//   endpoint, "Older messages" loaded in place.
import { gateway } from "./realtime.js";

const root = document.querySelector("[data-forum-thread]");
const configEl = document.getElementById("forum-config");

if (root && configEl) start(root, JSON.parse(configEl.textContent));

function start(root, config) {
  const t = config.strings;
  const urls = config.urls;
  const room = root.dataset.room;
  const threadId = Number(root.dataset.thread);
  const memberId = Number(root.dataset.member);
  const moderator = root.dataset.moderator === "1";
  const canPost = root.dataset.canPost === "1";
  const paged = root.dataset.paged === "1";
  const list = root.querySelector("[data-messages]");
  const typingLine = root.querySelector("[data-typing]");
  const presenceLine = root.querySelector("[data-presence]");
  const statusLine = root.querySelector("[data-live-status]");
  const form = document.querySelector("form[data-compose]");
  const textarea = form?.querySelector("textarea[name=body]");
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
  const known = new Set(Array.from(list.querySelectorAll("li[data-id]"), (li) => Number(li.dataset.id)));
  let liveDivider = null;

  const fill = (text, values) => text.replace(/%\((\w+)\)s/g, (_m, key) => values[key] ?? "");
  const urlFor = (name, id) => urls[name].replace("/0/", `/${id}/`);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  };

  // --- Rendering one message ----------------------------------------------------------------

  function messageBody(message) {
    if (message.deleted) return el("p", { class: "msg-body muted", text: t.deleted });
    if (message.hidden && !moderator) return el("p", { class: "msg-body muted", text: t.hidden });
    if (message.hidden) return el("p", { class: "msg-hidden-note", role: "note", text: t.hidden_moderator });
    const body = el("div", { class: "msg-body" });
    // body_html is sanitized on the server (allow-listed tags, no scripts or handlers).
    body.innerHTML = message.body_html;
    return body;
  }

  function postForm(action, label, extraClass = "link-button") {
    const f = el("form", { method: "post", action });
    f.append(el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrf }));
    f.append(el("button", { type: "submit", class: extraClass, text: label }));
    return f;
  }

  function reactionsForm(message) {
    const f = el("form", { class: "reactions", method: "post", action: urlFor("react", message.id) });
    f.append(el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrf }));
    renderReactionCounts(f, message.reactions || {});
    if (canPost) {
      const picker = el("details", { class: "reaction-picker" }, el("summary", { text: t.react }));
      for (const emoji of Object.keys(emojiOrder())) {
        picker.append(el("button", { type: "submit", name: "emoji", value: emoji, class: "reaction", "aria-label": `${t.react_with} ${emoji}`, text: emoji }));
      }
      f.append(picker);
    }
    return f;
  }

  function emojiOrder() {
    // The fixed set, in the order the server renders it (taken from any picker on the page).
    const picker = document.querySelector(".reaction-picker");
    const order = {};
    if (picker) for (const b of picker.querySelectorAll("button[name=emoji]")) order[b.value] = true;
    else for (const e of ["👍", "❤️", "😄", "🎉", "🤔", "👀"]) order[e] = true;
    return order;
  }

  function renderReactionCounts(formEl, counts) {
    const picker = formEl.querySelector(".reaction-picker");
    const pressed = {};
    for (const b of formEl.querySelectorAll(":scope > button.reaction")) {
      pressed[b.value] = b.getAttribute("aria-pressed");
      b.remove();
    }
    for (const emoji of Object.keys(emojiOrder())) {
      const count = counts[emoji];
      if (!count) continue;
      const button = el("button", { type: "submit", name: "emoji", value: emoji, class: "reaction", "aria-pressed": pressed[emoji] || "false", disabled: !canPost });
      button.append(el("span", { "aria-hidden": "true", text: emoji }), " ", el("span", { class: "visually-hidden", text: `${t.react_with} ${emoji}:` }), ` ${count}`);
      formEl.insertBefore(button, picker);
    }
  }

  function actions(message) {
    const ul = el("ul", { class: "msg-actions" });
    const own = message.author.id === memberId;
    if (canPost) {
      const a = el("a", { href: `?reply_to=${message.id}#compose`, "data-reply": message.id, "data-reply-name": message.author.name, text: t.reply });
      ul.append(el("li", {}, a));
    }
    if (own && canPost) ul.append(el("li", {}, el("a", { href: urlFor("edit", message.id), text: t.edit })));
    if ((own && canPost) || moderator) {
      const del = postForm(urlFor("delete", message.id), t.delete);
      del.dataset.confirm = t.delete_confirm;
      ul.append(el("li", {}, del));
    }
    if (!own) ul.append(el("li", {}, el("a", { href: urlFor("report", message.id), text: t.report })));
    if (moderator) {
      ul.append(el("li", {}, message.hidden ? postForm(urlFor("unhide", message.id), t.unhide) : el("a", { href: urlFor("hide", message.id), text: t.hide })));
      if (!own) ul.append(el("li", {}, el("a", { href: urlFor("mute", message.id), text: t.mute_author })));
    }
    return ul;
  }

  function attachmentList(files) {
    const ul = el("ul", { class: "msg-attachments", "aria-label": t.attachments });
    for (const file of files) {
      const size = file.size >= 1048576 ? `${(file.size / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(file.size / 1024))} KB`;
      ul.append(el("li", {}, el("a", { href: file.url, download: true, text: file.name }), " ", el("span", { class: "muted", text: `(${size})` })));
    }
    return ul;
  }

  function renderMessage(message) {
    const li = el("li", { class: "msg msg-live", id: `m-${message.id}`, "data-id": message.id, "data-seq": message.seq });
    if (message.author.id === memberId) li.classList.add("msg-own");
    const article = el("article", { "aria-labelledby": `m-${message.id}-author` });
    const head = el("header", { class: "msg-head" });
    head.append(el("span", { class: "msg-author", id: `m-${message.id}-author`, text: message.author.name }));
    if (message.author.organization) head.append(" ", el("span", { class: "muted msg-org", text: message.author.organization }));
    const when = new Date(message.created_at);
    const time = el("time", { datetime: message.created_at, text: when.toLocaleString() });
    head.append(" ", el("a", { class: "msg-time muted", href: `#m-${message.id}` }, time));
    if (message.edited_at && !message.deleted) head.append(" ", el("span", { class: "muted msg-edited", text: t.edited }));
    article.append(head);
    if (message.reply_to) {
      const parent = document.getElementById(`m-${message.reply_to}`);
      const name = parent?.querySelector(".msg-author")?.textContent;
      const ref = el("p", { class: "msg-reply-ref muted" });
      ref.append(name ? el("a", { href: `#m-${message.reply_to}`, text: fill(t.in_reply_to, { name }) }) : t.in_reply_to_earlier);
      article.append(ref);
    }
    article.append(messageBody(message));
    if (message.attachments?.length) article.append(attachmentList(message.attachments));
    if (!message.deleted) {
      article.append(reactionsForm(message));
      article.append(actions(message));
    }
    li.append(article);
    return li;
  }

  function insertInOrder(li) {
    const seq = Number(li.dataset.seq);
    list.querySelector("[data-empty]")?.remove();
    const later = Array.from(list.querySelectorAll("li[data-seq]")).find((other) => Number(other.dataset.seq) > seq);
    list.insertBefore(li, later || null);
  }

  // --- Live frames ----------------------------------------------------------------------------

  const gw = gateway({ memberId });

  gw.addEventListener("message.created", (event) => {
    const message = event.detail.message;
    if (paged || !message || message.thread !== threadId || known.has(message.id)) return;
    known.add(message.id);
    const li = renderMessage(message);
    if (document.hidden && !liveDivider && message.author.id !== memberId) {
      list.querySelector("[data-divider]")?.remove();
      liveDivider = el("li", { class: "new-divider", id: "new-messages", "data-divider": true }, el("span", { text: t.new_messages }));
      insertInOrder(li);
      list.insertBefore(liveDivider, li);
    } else {
      insertInOrder(li);
    }
    if (!document.hidden) markRead();
  });

  function replaceMessage(message) {
    if (message.thread !== threadId) return;
    const old = document.getElementById(`m-${message.id}`);
    if (!old) return;
    if (old.classList.contains("msg-live") || message.deleted || message.hidden) {
      const fresh = renderMessage(message);
      fresh.classList.toggle("msg-hidden", Boolean(message.hidden));
      fresh.classList.toggle("msg-deleted", Boolean(message.deleted));
      if (moderator && message.hidden && !message.deleted) {
        // Moderators keep reading what they hid: keep the server-rendered body.
        const body = old.querySelector("div.msg-body");
        const note = fresh.querySelector(".msg-hidden-note");
        if (body && note) note.after(body.cloneNode(true));
      }
      old.replaceWith(fresh);
      return;
    }
    const body = old.querySelector(".msg-body");
    if (body) body.replaceWith(messageBody(message));
    old.querySelector(".msg-hidden-note")?.remove();
    old.classList.remove("msg-hidden");
    if (message.edited_at && !old.querySelector(".msg-edited")) {
      old.querySelector(".msg-head")?.append(" ", el("span", { class: "muted msg-edited", text: t.edited }));
    }
  }

  for (const kind of ["message.edited", "message.deleted", "message.hidden", "message.unhidden"]) {
    gw.addEventListener(kind, (event) => event.detail.message && replaceMessage(event.detail.message));
  }

  gw.addEventListener("reaction.changed", (event) => {
    const formEl = document.querySelector(`#m-${event.detail.message_id} form.reactions`);
    if (formEl) renderReactionCounts(formEl, event.detail.reactions || {});
  });

  gw.addEventListener("thread.updated", (event) => {
    const thread = event.detail.thread;
    if (!thread || thread.id !== threadId) return;
    for (const badge of document.querySelectorAll("[data-badge]")) {
      badge.hidden = !thread[badge.dataset.badge];
    }
  });

  // Typing: "Ana is typing…" for a few seconds after each frame.
  const typists = new Map();
  function showTyping() {
    const names = Array.from(typists.keys());
    typingLine.textContent = names.length === 0 ? "" : names.length === 1 ? fill(t.typing_one, { name: names[0] }) : fill(t.typing_many, { names: names.join(", ") });
  }
  gw.addEventListener("typing", (event) => {
    const frame = event.detail;
    if (frame.room !== room || frame.thread !== threadId || !frame.member) return;
    const name = frame.member.name;
    clearTimeout(typists.get(name));
    typists.set(name, setTimeout(() => { typists.delete(name); showTyping(); }, 5000));
    showTyping();
  });

  function showPresence(online) {
    if (!Array.isArray(online)) return;
    presenceLine.hidden = online.length === 0;
    presenceLine.textContent = fill(t.here_now, { names: online.map((m) => m.name).join(", ") });
  }
  gw.addEventListener("subscribed", (event) => event.detail.room === room && showPresence(event.detail.online));
  gw.addEventListener("presence", (event) => event.detail.room === room && showPresence(event.detail.online));

  gw.addEventListener("status", (event) => {
    statusLine.textContent = event.detail.state === "open" ? t.live : t.offline;
  });

  gw.addEventListener("resync", (event) => {
    if (event.detail.room !== room) return;
    // Too much was missed to replay: the page reloads unless the member is writing.
    if (!textarea || !textarea.value.trim()) {
      statusLine.textContent = t.resync;
      window.location.reload();
    } else {
      statusLine.textContent = t.offline;
    }
  });

  // The bell shares this socket (bell.js listens for minga:frame and opens no socket of its own
  // once one arrives). bell.js runs after this module and connects from a zero-delay timer:
  // this earlier timer announces the shared client first.
  setTimeout(() => document.dispatchEvent(new CustomEvent("minga:frame", { detail: { type: "realtime.shared" } })), 0);
  for (const kind of ["notification", "notification.read"]) {
    gw.addEventListener(kind, (event) => document.dispatchEvent(new CustomEvent("minga:frame", { detail: event.detail })));
  }

  // data-after-change (the room's change number when the page was read) makes the catch-up
  // lossless from the first subscribe; without it the client starts from `subscribed`.
  const changesAfter = root.dataset.afterChange === undefined ? null : Number(root.dataset.afterChange);
  gw.subscribe(room, { after: Number(root.dataset.after), changesAfter });

  // --- Read state -----------------------------------------------------------------------------

  function newestId() {
    const items = list.querySelectorAll("li[data-id]");
    return items.length ? Number(items[items.length - 1].dataset.id) : null;
  }
  let lastMarked = paged ? null : newestId();
  function markRead() {
    const id = newestId();
    if (paged || id === null || id === lastMarked) return;
    lastMarked = id;
    gw.read(room, threadId, id);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) markRead();
    else liveDivider = null;
  });

  // --- Compose --------------------------------------------------------------------------------

  if (form && textarea) enhanceCompose();

  function enhanceCompose() {
    const clientIdInput = form.querySelector("input[name=client_id]");
    const replyInput = form.querySelector("input[name=reply_to]");
    const replying = document.querySelector("[data-replying]");
    const replyingText = document.querySelector("[data-replying-text]");
    let errorBox = null;

    const showError = (text) => {
      errorBox?.remove();
      errorBox = el("div", { class: "form-errors", role: "alert" }, el("p", { text }));
      form.prepend(errorBox);
    };
    const newClientId = () => (window.crypto?.randomUUID ? window.crypto.randomUUID() : clientIdInput.value);

    document.addEventListener("click", (event) => {
      const reply = event.target.closest("[data-reply]");
      if (reply) {
        event.preventDefault();
        replyInput.value = reply.dataset.reply;
        replyingText.textContent = fill(t.replying_to, { name: reply.dataset.replyName });
        replying.hidden = false;
        textarea.focus();
        return;
      }
      if (event.target.closest("[data-reply-cancel]")) {
        event.preventDefault();
        replyInput.value = "";
        replying.hidden = true;
        textarea.focus();
      }
    });

    const fileInput = form.querySelector("input[type=file]");
    form.addEventListener("submit", async (event) => {
      if (fileInput?.files.length) {
        // Files go with the form itself (multipart); refuse an oversized one before uploading it.
        const max = Number(fileInput.dataset.maxBytes || 0);
        const big = Array.from(fileInput.files).find((file) => max && file.size > max);
        if (big) {
          event.preventDefault();
          showError(fill(t.file_too_large, { name: big.name, size: `${(max / 1048576).toFixed(1)} MB` }));
        }
        return;
      }
      if (form.querySelector("input[name=attachments]")) return; // files uploaded by a refused try
      if (gw.state !== "open" || !textarea.value.trim()) return; // the form posts itself
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        await gw.send({
          room,
          thread: threadId,
          body: textarea.value,
          replyTo: replyInput.value ? Number(replyInput.value) : null,
          clientId: clientIdInput.value,
        });
        textarea.value = "";
        replyInput.value = "";
        replying.hidden = true;
        clientIdInput.value = newClientId();
        errorBox?.remove();
      } catch (error) {
        // Nothing is lost: the text stays, with the server's reason above it.
        showError(fill(t.send_failed, { detail: error.detail || error.message }));
      } finally {
        button.disabled = false;
      }
    });

    textarea.addEventListener("input", () => gw.typing(room, threadId));
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
    mentions(textarea);
  }

  // --- Mention autocomplete -------------------------------------------------------------------

  function mentions(input) {
    const box = document.querySelector("[data-mention-list]");
    const endpoint = root.dataset.membersUrl;
    if (!box || !endpoint) return;
    let options = [];
    let active = -1;
    let timer = null;
    let controller = null;

    const token = () => {
      const before = input.value.slice(0, input.selectionStart);
      const match = /(^|\s)@([\p{L}\p{N}_.-]{1,30})$/u.exec(before);
      return match ? match[2] : null;
    };
    const close = () => {
      box.hidden = true;
      box.replaceChildren();
      options = [];
      active = -1;
      input.removeAttribute("aria-activedescendant");
    };
    const pick = (member) => {
      const before = input.value.slice(0, input.selectionStart);
      const after = input.value.slice(input.selectionStart);
      const start = before.lastIndexOf("@");
      input.value = `${before.slice(0, start)}@${member.handle} ${after}`;
      const caret = start + member.handle.length + 2;
      input.setSelectionRange(caret, caret);
      close();
      input.focus();
    };
    const highlight = (index) => {
      active = index;
      box.querySelectorAll("[role=option]").forEach((node, i) => node.setAttribute("aria-selected", String(i === index)));
      if (index >= 0) input.setAttribute("aria-activedescendant", `mention-${index}`);
    };
    const show = (members) => {
      options = members;
      box.replaceChildren(...members.map((member, i) => {
        const option = el("div", { role: "option", id: `mention-${i}`, "aria-selected": "false", class: "mention-option" });
        option.append(el("strong", { text: `@${member.handle}` }), " ", el("span", { text: member.name }));
        if (member.organization) option.append(" ", el("span", { class: "muted", text: member.organization }));
        option.addEventListener("mousedown", (event) => { event.preventDefault(); pick(member); });
        return option;
      }));
      box.hidden = members.length === 0;
      highlight(members.length ? 0 : -1);
    };

    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", box.id || (box.id = "mention-list"));
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const q = token();
      if (!q) return close();
      timer = setTimeout(async () => {
        controller?.abort();
        controller = new AbortController();
        try {
          const response = await fetch(`${endpoint}?q=${encodeURIComponent(q)}`, { credentials: "same-origin", signal: controller.signal, headers: { Accept: "application/json" } });
          if (response.ok && token() === q) show((await response.json()).members);
        } catch {
          // Aborted by the next keystroke, or offline: no suggestions.
        }
      }, 150);
    });
    input.addEventListener("keydown", (event) => {
      if (box.hidden || !options.length) return;
      if (event.key === "ArrowDown") { event.preventDefault(); highlight((active + 1) % options.length); }
      else if (event.key === "ArrowUp") { event.preventDefault(); highlight((active - 1 + options.length) % options.length); }
      else if ((event.key === "Enter" || event.key === "Tab") && active >= 0) { event.preventDefault(); pick(options[active]); }
      else if (event.key === "Escape") { event.preventDefault(); close(); }
    });
    input.addEventListener("blur", () => setTimeout(close, 100));
  }

  // --- Older messages -------------------------------------------------------------------------

  root.addEventListener("click", async (event) => {
    const link = event.target.closest("[data-load-older]");
    if (!link) return;
    event.preventDefault();
    link.setAttribute("aria-busy", "true");
    link.textContent = t.loading;
    try {
      const response = await fetch(link.href, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const older = Array.from(page.querySelectorAll("[data-messages] > li[data-id]")).filter((li) => !known.has(Number(li.dataset.id)));
      const first = list.querySelector("li");
      for (const li of older) {
        known.add(Number(li.dataset.id));
        list.insertBefore(document.importNode(li, true), first);
      }
      const next = page.querySelector("[data-load-older]");
      if (next) {
        link.href = next.getAttribute("href");
        link.textContent = next.textContent;
        link.removeAttribute("aria-busy");
      } else {
        link.replaceWith(el("span", { class: "muted", text: t.no_more }));
      }
    } catch {
      window.location.href = link.href; // the plain page works without any of this
    }
  });

  // Destructive buttons ask first.
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset?.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
}
