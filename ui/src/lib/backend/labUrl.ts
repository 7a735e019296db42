/** A lab server address as the desktop app’s first screen checks it before asking the shell (which checks it again). */
export function checkServerUrl(url: string): string | null {
  const u = url.trim();
  if (!u) return 'Give the lab server’s address, e.g. http://lab-pc:7780';
  if (/^https:\/\//i.test(u)) return 'https is not supported: give the server’s http:// address';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(u) && !/^http:\/\//i.test(u)) return 'The address must start with http://';
  return null;
}
