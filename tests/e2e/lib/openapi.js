'use strict';
// Checks genrelay's answers against docs/openapi.yaml.
//
//   const { checkResponse } = require('./openapi');
//   const why = checkResponse('GET', '/v1/jobs/job_1?wait=1', 200, headers, text);
//   // null when the document describes this answer, else the reason
//
// The harness calls it on every answer from a genrelay it started (see
// request() in harness.js). An answer is described when the document has,
// for the path (templates matched segment by segment; a parameter marked
// `x-slashes` may span segments) and method, a response for the status (or
// its `4XX` range) whose media type is the answer's Content-Type and whose
// schema the body validates against (ajv, JSON Schema 2020-12, with formats),
// and whose required headers are present. Paths the document does not list
// answer as its `x-unmatched-path` says, methods a path does not serve as
// the path's `x-other-methods`; `x-transport-responses` (answers of the HTTP
// layer) apply everywhere; paths under an `x-outside-api` prefix (the web
// dashboard) are not the API's and are not checked. The validator's packages are pinned in
// tools/openapi/package.json (npm ci by tools/install-deps).

const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

const SRC = process.env.GENRELAY_SRC || path.resolve(__dirname, '..', '..', '..');
const SPEC = process.env.GENRELAY_OPENAPI || path.join(SRC, 'docs', 'openapi.yaml');
const TOOLS = path.join(SRC, 'tools', 'openapi', 'package.json');
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

let state = null; // {doc, ajv, routes, cache}

function load() {
  if (state) return state;
  const req = createRequire(TOOLS);
  let YAML, Ajv2020, addFormats;
  try {
    YAML = req('yaml');
    Ajv2020 = req('ajv/dist/2020').default;
    addFormats = req('ajv-formats').default;
  } catch (e) {
    throw new Error(`the OpenAPI validator's packages are missing (${e.message}); run tools/install-deps (npm ci in tools/openapi)`);
  }
  const doc = YAML.parse(fs.readFileSync(SPEC, 'utf8'));
  // The whole document is one schema resource, so that every
  // "#/components/..." reference resolves where it points.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  ajv.addSchema(doc, 'openapi');
  const routes = Object.keys(doc.paths).map((tpl) => route(doc, tpl));
  // Fewer parameters first: a literal path wins over a template.
  routes.sort((a, b) => a.params - b.params);
  state = { doc, ajv, routes, cache: new Map() };
  return state;
}

function escapePointer(s) {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

function resolve(doc, obj, ptr) {
  for (let i = 0; obj && obj.$ref && i < 10; i++) {
    if (!obj.$ref.startsWith('#/')) throw new Error(`external $ref ${obj.$ref} is not supported`);
    ptr = obj.$ref.slice(1);
    obj = ptr
      .split('/')
      .slice(1)
      .reduce((o, k) => (o ? o[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
  }
  return { obj, ptr };
}

function route(doc, tpl) {
  const item = doc.paths[tpl];
  const params = {};
  for (const p of item.parameters || []) {
    const r = resolve(doc, p, '').obj;
    if (r.in === 'path') params[r.name] = r;
  }
  for (const m of METHODS) {
    for (const p of (item[m] && item[m].parameters) || []) {
      const r = resolve(doc, p, '').obj;
      if (r.in === 'path') params[r.name] = r;
    }
  }
  let n = 0;
  const re = tpl
    .split('/')
    .map((seg) => {
      const m = /^\{(.+)\}$/.exec(seg);
      if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      n++;
      return params[m[1]] && params[m[1]]['x-slashes'] ? '(.+)' : '([^/]+)';
    })
    .join('/');
  return { tpl, re: new RegExp(`^${re}$`), params: n, ptr: `/paths/${escapePointer(tpl)}`, item };
}

// The responses that apply: {map, ptr} where map is status -> response object.
function responsesFor(st, method, pathname) {
  const { doc, routes } = st;
  const r = routes.find((x) => x.re.test(pathname));
  if (!r) return { where: 'x-unmatched-path', map: doc['x-unmatched-path'] || {}, ptr: '/x-unmatched-path' };
  const m = method.toLowerCase();
  if (r.item[m]) return { where: `${method.toUpperCase()} ${r.tpl}`, map: r.item[m].responses || {}, ptr: `${r.ptr}/${m}/responses` };
  return { where: `${r.tpl} x-other-methods`, map: r.item['x-other-methods'] || {}, ptr: `${r.ptr}/x-other-methods` };
}

function pick(map, status) {
  const s = String(status);
  if (map[s]) return s;
  const range = `${s[0]}XX`;
  if (map[range]) return range;
  return null;
}

function compile(st, ptr) {
  let v = st.cache.get(ptr);
  if (!v) {
    v = st.ajv.compile({ $ref: `openapi#${ptr}` });
    st.cache.set(ptr, v);
  }
  return v;
}

function mediaMatches(declared, actual) {
  if (declared === actual) return true;
  const [dt, ds] = declared.split('/');
  const [at] = actual.split('/');
  return (ds === '*' && dt === at) || declared === '*/*';
}

// Checks one answer. headers: lower-case names as node gives them; text:
// the body as text. Returns null when the document describes it, else a
// sentence saying why not.
function checkResponse(method, url, status, headers, text) {
  const st = load();
  // Matched as the server routes it: libmicrohttpd percent-decodes the path
  // (%2F is a '/' by then, and a %00 ends the C string).
  const pathname = new URL(url, 'http://x').pathname
    .replace(/%([0-9a-fA-F]{2})/g, (m, h) => String.fromCharCode(parseInt(h, 16)))
    .split('\0')[0];
  // Paths the document declares outside the API (the web dashboard).
  for (const prefix of st.doc['x-outside-api'] || []) {
    if (pathname === prefix || pathname.startsWith(prefix + '/')) return null;
  }
  const got = responsesFor(st, method, pathname);
  let code = pick(got.map, status);
  let map = got.map;
  let ptr = got.ptr;
  if (!code) {
    map = st.doc['x-transport-responses'] || {};
    ptr = '/x-transport-responses';
    code = pick(map, status);
  }
  if (!code) return `${got.where} documents no ${status} answer`;
  const { obj: resp, ptr: rptr } = resolve(st.doc, map[code], `${ptr}/${escapePointer(code)}`);
  for (const [name, h] of Object.entries(resp.headers || {})) {
    const hd = resolve(st.doc, h, '').obj;
    const v = headers[name.toLowerCase()];
    if (hd.required && (v === undefined || v === '')) return `${got.where} ${status}: header ${name} is required`;
  }
  const content = resp.content || {};
  const types = Object.keys(content);
  if (!types.length) return text ? `${got.where} ${status} has no body, got ${text.slice(0, 200)}` : null;
  if (method.toUpperCase() === 'HEAD') return null;
  const ct = String(headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  // No Content-Type at all (libmicrohttpd's own error pages): the answer
  // may be any documented media type that is not JSON, as a client sniffs.
  const mt = ct ? types.find((t) => mediaMatches(t, ct)) : types.find((t) => !/[/+]json$/.test(t));
  if (!mt) return `${got.where} ${status}: Content-Type "${ct}" is not one of ${types.join(', ')}`;
  if (!content[mt].schema) return null;
  let value = text;
  if (/[/+]json$/.test(mt)) {
    try {
      value = JSON.parse(text);
    } catch (e) {
      return `${got.where} ${status}: body is not JSON: ${text.slice(0, 200)}`;
    }
  }
  const validate = compile(st, `${rptr}/content/${escapePointer(mt)}/schema`);
  if (validate(value)) return null;
  const errs = validate.errors
    .slice(0, 5)
    .map((e) => `${e.instancePath || '/'} ${e.message}${e.params && e.params.allowedValues ? ` (${e.params.allowedValues.join(', ')})` : ''}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ''}`)
    .join('; ');
  return `${got.where} ${status}: body does not match the document: ${errs}; body: ${text.slice(0, 300)}`;
}

module.exports = { checkResponse, load, SPEC };
