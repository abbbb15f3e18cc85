// Service worker of /mi: keeps the page's own files so the phone page opens without coverage.
// The page shell is network-first (a fresh CSRF token and code when online), its static files are
// served from the cache and refreshed behind; API calls are never cached here (the page keeps its data).
// A new name when a release changes what one of these files imports from another (mi.js from api.js): each is
// refreshed on its own behind the page, and a new mi.js beside an api.js whose refresh failed would not load at
// all; the install below fetches every one of a new name together (addAll: all or none) and drops the old.
const CACHE = "gad-mi-v8";
const SHELL = [
  "/mi",
  "/static/css/app.css",
  "/static/js/mi.js",
  "/static/js/api.js",
  "/static/js/live.js",
  "/static/js/cola.js",
  "/static/js/salida.js",
  "/static/js/bandeja.js",
  "/static/mi/manifest.webmanifest",
  "/static/mi/icono-192.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// The copy's event-log head is as old as the copy: the page would resume from it and have every event since
// replayed when coverage returns. Without it the page reads everything afresh then, as it does on "online".
async function withoutHead(cached) {
  const html = (await cached.text()).replace(/ data-last-event-id="\d*"/, "");
  return new Response(html, { status: cached.status, statusText: cached.statusText, headers: cached.headers });
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname === "/mi") {
    event.respondWith(
      fetch(event.request)
        .then((response) => {
          // Not a page drawn to forget someone's data (X-GAD-Olvida): opened offline later, it would forget again.
          if (response.ok && !response.headers.has("X-GAD-Olvida")) {
            const copy = response.clone();
            caches.open(CACHE).then((cache) => cache.put("/mi", copy));
          }
          return response;
        })
        .catch(() => caches.match("/mi").then((cached) => cached && withoutHead(cached))),
    );
    return;
  }
  if (SHELL.includes(url.pathname)) {
    event.respondWith(
      caches.match(url.pathname).then((cached) => {
        const refresh = fetch(event.request)
          .then((response) => {
            if (response.ok) {
              const copy = response.clone();
              caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
            }
            return response;
          })
          .catch(() => cached);
        return cached ?? refresh;
      }),
    );
  }
});
