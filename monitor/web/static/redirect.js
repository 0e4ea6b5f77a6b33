// Where to go after signing in: a path on this site only, never another origin. The value is
// resolved the way the browser will resolve it (so "/\evil.example/" and "/<TAB>/evil.example/",
// which browsers read as "//evil.example/", are refused) and its origin compared with ours.
export function safeNext(next, origin) {
  if (typeof next !== "string" || !next.startsWith("/")) return null;
  let url;
  try {
    url = new URL(next, origin);
  } catch {
    return null;
  }
  if (url.origin !== origin) return null;
  return url.pathname + url.search + url.hash;
}
