'use strict';
// --strict-callbacks: the webhook URL rules of providers that refuse some
// callback URLs (docs/provider-facts.md): Artificial Studio refuses non-HTTPS
// URLs and localhost or private addresses; ModelsLab requires HTTPS.
// callbackRefusal(url, {https, public}) gives the reason, or null when the
// URL passes. Only the URL's spelling is judged (no DNS lookups).

function privateHost(host) {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1' || h === '::' || h === '0.0.0.0') return true;
  if (/^(fc|fd)[0-9a-f]{0,2}:/.test(h) || /^fe[89ab][0-9a-f]?:/.test(h)) return true;
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(h);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
}

function callbackRefusal(url, { https = false, public: pub = false } = {}) {
  let u;
  try {
    u = new URL(url);
  } catch (e) {
    return 'webhook must be a valid URL';
  }
  if (https && u.protocol !== 'https:') return 'webhook URL must use HTTPS';
  if (pub && privateHost(u.hostname)) return 'webhook URL must not point to localhost or a private address';
  return null;
}

module.exports = { callbackRefusal, privateHost };
