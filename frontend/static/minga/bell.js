// The live notification bell: keeps the unread count of every open tab current.
// Progressive enhancement: without this file the bell is a link with the count at page load.
//
// Frames (docs/realtime-protocol.md) arrive on the member's own group `user.<id>`, whatever
// room the tab looks at:
//   {"type": "notification", "notification": {...}, "unread_count": N}
//   {"type": "notification.read", "ids": [...], "unread_count": N}   (another tab marked read)
// A page that already has a realtime client may dispatch `minga:frame` events on `document`
// with the frame as `detail`; the bell then uses them and opens no socket of its own.

const bell = document.querySelector("[data-bell]");
const badge = bell?.querySelector("[data-bell-count]");

function show(count) {
  if (!bell || !badge || !Number.isInteger(count) || count < 0) return;
  bell.dataset.unread = String(count);
  badge.textContent = String(count);
  badge.hidden = count === 0;
  const template = bell.dataset.labelTemplate || bell.getAttribute("aria-label") || "";
  if (!bell.dataset.labelTemplate) bell.dataset.labelTemplate = template;
  bell.setAttribute("aria-label", template.replace(/\d+/, String(count)));
}

function onFrame(frame) {
  if (!frame || typeof frame !== "object") return;
  if (frame.type === "notification" || frame.type === "notification.read") {
    show(frame.unread_count);
    document.dispatchEvent(new CustomEvent("minga:notification", { detail: frame }));
  }
}

async function resync() {
  // After a (re)connect: frames sent while the socket was down are gone, the count is not.
  try {
    const response = await fetch("/api/v1/notifications/?unread=true&limit=1", {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (response.ok) show((await response.json()).unread_count);
  } catch {
    // Offline: the next reconnect tries again.
  }
}

let shared = false;
document.addEventListener("minga:frame", (event) => {
  shared = true;
  onFrame(event.detail);
});

function connect(delay = 1000) {
  if (shared) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/ws/`);
  socket.addEventListener("open", () => {
    delay = 1000;
    resync();
  });
  socket.addEventListener("message", (event) => {
    try {
      onFrame(JSON.parse(event.data));
    } catch {
      // Not JSON: not for the bell.
    }
  });
  socket.addEventListener("close", (event) => {
    if (event.code === 4401) return; // signed out: nothing to count
    const next = Math.min(delay * 2, 30000);
    setTimeout(() => connect(next), delay + Math.random() * 500);
  });
}

if (bell && badge && "WebSocket" in window) {
  // Let a shared realtime client announce itself first.
  setTimeout(() => connect(), 0);
}
