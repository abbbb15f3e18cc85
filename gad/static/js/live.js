// The live stream: opens /ws/connect with the session cookie, remembers the last event id, and on
// reconnect resumes with ?since= so nothing is missed. On resync_required the page refetches. Each frame is
// handed over with `{replayed}`: true for what a resume replays (ids up to the head the server acknowledged;
// ids are in commit order), which a page may prefer to check against REST, read after it, than to act on.
import * as apiModule from "./api.js";
import { pageUsuario, reopenUnlessEnded, resumeFrom } from "./api.js";

const KEY = "gad:last-event-id";
const indicator = () => document.getElementById("conexion");

function setStatus(estado, texto) {
  const node = indicator();
  if (node) {
    node.dataset.estado = estado;
    node.textContent = texto;
  }
}

// A page's socket relays its frames to the notification tray (bandeja.js), which then opens none of its own; the
// tray's own socket, on pages without a live view, is `relay: false` and mutes the topics it does not show once
// acknowledged (`onAck`). Either way the top bar's badge (#conexion) says how the socket is.
export function connectLive({ onEvent, onResync, key = KEY, relay = true, onAck = () => {} }) {
  if (relay) document.body.dataset.live = "1";
  let delay = 500;
  let socket;
  let head = Infinity;
  let stopped = false;
  const open = () => {
    if (stopped) return; // closed while a reconnect was waiting its turn
    if (socket && socket.readyState <= WebSocket.OPEN) return; // one socket: a reconnect and a resume may both ask
    const since = resumeFrom(key);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams();
    if (since) query.set("since", since);
    if (pageUsuario) query.set("usuario", pageUsuario); // refused when the browser's session is now another usuario's
    const url = `${scheme}://${location.host}/ws/connect${query.toString() ? `?${query}` : ""}`;
    setStatus("conectando", "Conectando…");
    socket = new WebSocket(url);
    let acknowledged = false;
    socket.addEventListener("message", (message) => {
      const frame = JSON.parse(message.data);
      // An open socket keeps its session in use (the server touches it): the page counts it as such. (`?.`: an api.js
      // the phone's service worker cached before it had this.)
      apiModule.sessionUsed?.();
      if (frame.event_type === "connection_ack") {
        acknowledged = true;
        head = frame.data.last_event_id;
        delay = 500;
        setStatus("conectado", "En vivo");
        onAck(socket);
        if (!since) sessionStorage.setItem(key, String(frame.data.last_event_id));
        if (relay) window.dispatchEvent(new CustomEvent("gad:live")); // the tray (bandeja.js) needs no socket of its own
      } else if (frame.event_type === "resync_required") {
        head = frame.data.last_event_id; // nothing is replayed: the page refetches, and what follows is live
        sessionStorage.setItem(key, String(frame.data.last_event_id));
        setStatus("conectado", "En vivo");
        onResync();
        if (relay) window.dispatchEvent(new CustomEvent("gad:resync")); // the tray (bandeja.js) refetches as well
      } else if (frame.event_type === "ping") {
        socket.send(JSON.stringify({ event_type: "pong" }));
      } else if (typeof frame.id === "number") {
        sessionStorage.setItem(key, String(frame.id));
        onEvent(frame, { replayed: frame.id <= head, socket });
        if (relay) window.dispatchEvent(new CustomEvent("gad:frame", { detail: { frame, socket } }));
      }
    });
    socket.addEventListener("close", async () => {
      if (stopped) return;
      setStatus("desconectado", "Sin conexión — reintentando");
      const reopening = await reopenUnlessEnded(acknowledged, open, delay);
      if (!reopening && !stopped) setStatus("caducada", "Sesión caducada");
      delay = Math.min(delay * 2, 10000);
    });
  };
  open();
  // The page judged its session over without coverage and the server has since answered it: the socket that was not
  // reopened then opens now.
  window.addEventListener("gad:session-resumed", open);
  // Closed for good: not reopened, and the badge left to the page's other socket.
  return {
    close: () => {
      stopped = true;
      socket?.close();
    },
  };
}
