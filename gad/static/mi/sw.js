// Service worker of /mi: keeps the page's own files so the phone page opens without coverage.
// The page shell is network-first (a fresh CSRF token and code when online), its static files are
// served from the cache and refreshed behind; API calls are never cached here (the page keeps its data).
// A new name when a release changes what one of these files imports from another (mi.js from api.js): each is
// refreshed on its own behind the page, and a new mi.js beside an api.js whose refresh failed would not load at
// all; the install below fetches every one of a new name together (addAll: all or none) and drops the old.
const CACHE = "gad-mi-v9";
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

// A link that hangs (one bar, a captive portal) neither answers nor fails: the officer looked at a blank page for as
// long as it hung. Past this the kept copy is shown; the server's answer, when it comes, still refreshes it. Not
// right after a login (whose answer is the page drawn for the one who logged in, forgetting the one before): the
// copy is of an earlier session, perhaps another officer's.
const SLOW_MS = 4000;
const afterLogin = (request) => {
  try {
    return new URL(request.referrer).pathname === "/login";
  } catch {
    return false; // no referrer
  }
};

const keptPage = () => caches.match("/mi").then((cached) => cached && withoutHead(cached));

function networkFirst(request) {
  const network = fetch(request);
  // Copied before the answer is handed to the page (this callback is the first on it), stored whenever it comes.
  const stored = network
    .then((response) => {
      // Not a page drawn to forget someone's data (X-GAD-Olvida): opened offline later, it would forget again.
      if (!response.ok || response.headers.has("X-GAD-Olvida")) return undefined;
      const copy = response.clone();
      // Not into a cache a logout deleted while the answer was on its way (caches.open would make it again, holding
      // the page of the officer who just left and none of the files it needs).
      return caches.has(CACHE).then((kept) => kept && caches.open(CACHE).then((cache) => cache.put("/mi", copy)));
    })
    .catch(() => {});
  const shown = new Promise((resolve, reject) => {
    let done = false;
    const settle = (response) => {
      if (!done && response) {
        done = true;
        resolve(response);
      }
    };
    const timer = afterLogin(request) ? undefined : setTimeout(() => keptPage().then(settle), SLOW_MS);
    network.then(
      (response) => {
        clearTimeout(timer);
        settle(response);
      },
      (error) => {
        clearTimeout(timer);
        keptPage().then((kept) => (kept ? settle(kept) : done || reject(error)));
      },
    );
  });
  return { stored, shown };
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname === "/mi") {
    const { stored, shown } = networkFirst(event.request);
    event.respondWith(shown);
    event.waitUntil(stored); // the worker stays until a late answer has refreshed the copy
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
