-- genrelay configuration (a trusted Lua file: it may read the environment).
-- Every key has a default; this file sets what `make run` needs.
--
-- With GENRELAY_SIM set (make run does it when no provider key is set), every
-- provider points at the local simulator, provsim.

local sim = os.getenv("GENRELAY_SIM")
local function base(real, path)
  if sim then return sim .. path end
  return real
end

listen     = os.getenv("GENRELAY_LISTEN") or "127.0.0.1:8080"
public_url = os.getenv("GENRELAY_PUBLIC_URL") or ("http://" .. listen)
store      = os.getenv("GENRELAY_STORE") or "sqlite:genrelay.db"
scripts    = os.getenv("GENRELAY_SCRIPTS") or "scripts"
workers    = 1

-- Admin surfaces and /metrics on the API listener take
-- `Authorization: Bearer <admin_key>`; metrics_token may read /metrics only
-- (a scraper's token). Both at least 16 bytes; unset (nil): not accepted.
admin_key     = os.getenv("GENRELAY_ADMIN_KEY")
metrics_token = os.getenv("GENRELAY_METRICS_TOKEN")
-- An extra listener serving /metrics and /healthz without a key, and nothing
-- else: bind it to a private address only.
-- metrics_listen = "127.0.0.1:9090"

providers = {
  fal = {
    base_url = base("https://queue.fal.run", "/fal"),
    key = os.getenv("FAL_KEY") or (sim and "sim-key"),
    jwks_url = base("https://rest.alpha.fal.ai/.well-known/jwks.json", "/fal/.well-known/jwks.json"),
  },
  krea = { base_url = base("https://api.krea.ai", "/krea"), key = os.getenv("KREA_API_TOKEN") or (sim and "sim-key") },
  modelslab = { base_url = base("https://modelslab.com/api/v6", "/modelslab/api/v6"),
                key = os.getenv("MODELSLAB_API_KEY") or (sim and "sim-key") },
  artificialstudio = { base_url = base("https://api.artificialstudio.ai", "/artificialstudio"),
                       key = os.getenv("ARTIFICIALSTUDIO_API_KEY") or (sim and "sim-key") },
  abstrakt = { base_url = base("https://api.abstrakt.one", "/abstrakt"),
               key = os.getenv("ABSTRAKT_API_KEY") or (sim and "sim-key"),
               webhook_secret = os.getenv("ABSTRAKT_WEBHOOK_SECRET") or (sim and "abstrakt-sim-secret") },
}

customers = {
  demo = {
    api_key = os.getenv("GENRELAY_DEMO_KEY") or "demo-key",
    webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    hook = "default",
    -- Token bucket over every authenticated request of the customer, per
    -- genrelay process: burst requests at once, per_s on average; past it
    -- 429 RATE_LIMITED with Retry-After. Unset: no limit.
    -- rate = { per_s = 10, burst = 20 },
  },
}

models = {
  ["flux-dev"] = { "krea:image/bfl/flux-1-dev", "fal:fal-ai/flux/dev" },
}

webhooks = {
  retry = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 },
  timeout_s = 10,
  -- the demo receiver runs on loopback over plain HTTP
  require_https = sim == nil,
  allow_private = sim ~= nil,
}

limits = {
  body_bytes = 1048576,           -- one request body (413 past it)
  buffered_bytes = 64 * 1048576,  -- all bodies being received at once in the process (503 past it)
}
