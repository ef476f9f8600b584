// kyso approval app: the service worker. It keeps the app's shell (page, manifest, icons) for a start
// without network, and nothing else: requests, documents, pages and decisions always go to the server.
"use strict";
const SHELL = "kyso-approve-shell-v1";
const ASSETS = ["/approve", "/approve/manifest.webmanifest", "/approve/icons/icon-192.png",
                "/approve/icons/icon-512.png", "/approve/icons/maskable-512.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(ASSETS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== SHELL).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !ASSETS.includes(url.pathname)) {
    return;  // the API, documents and pages: straight to the network, never cached
  }
  // The shell: the network first (a new version shows at once), the cached copy when offline.
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(SHELL).then((cache) => cache.put(url.pathname, copy));
    }
    return response;
  }).catch(() => caches.match(url.pathname)));
});

// Web Push (production, with VAPID keys): the push carries no document, only a nudge to open the app.
self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (err) { data = {}; }
  event.waitUntil(self.registration.showNotification(data.title || "Yêu cầu ký số mới", {
    body: data.body || "Mở ứng dụng để xem và duyệt.", tag: data.tag || "kyso-request",
    icon: "/approve/icons/icon-192.png", badge: "/approve/icons/icon-192.png", data: { url: "/approve" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    for (const w of windows) {
      if (new URL(w.url).pathname.startsWith("/approve")) { return w.focus(); }
    }
    return self.clients.openWindow("/approve");
  }));
});
