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
-- "sqlite:PATH" (one instance) or a libpq URL, "postgresql://user@host:5432/db"
-- (any number of instances; docs/deploy.md). The table form adds retention:
--   store = { url = "postgresql://genrelay@db:5432/genrelay", retention_days = 30 }
-- (finished jobs, their deliveries, attempts, callbacks and events are purged
-- that many days after they finished; fractions allowed; 0 or absent: kept).
store      = os.getenv("GENRELAY_STORE") or "sqlite:genrelay.db"
scripts    = os.getenv("GENRELAY_SCRIPTS") or "scripts"
workers    = 1

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
  },
}

models = {
  ["flux-dev"] = { "krea:image/bfl/flux-1-dev", "fal:fal-ai/flux/dev" },
}

jobs = {
  -- A claimed row's lease; the worker renews it every lease_s / 3 while the
  -- step runs, so a dead instance's work is picked up by the others within
  -- one lease.
  lease_s = 30,
}

webhooks = {
  retry = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 },
  timeout_s = 10,
  -- the demo receiver runs on loopback over plain HTTP
  require_https = sim == nil,
  allow_private = sim ~= nil,
}
