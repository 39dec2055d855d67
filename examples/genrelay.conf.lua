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

-- Callback URLs carry an HMAC of the job id under the server secret. Unset,
-- genrelay generates one and keeps it in the store; set here or in
-- GENRELAY_SERVER_SECRET (this file wins), it stays out of the store. To
-- rotate: set the new one, and keep the old one as server_secret_previous
-- (or GENRELAY_SERVER_SECRET_PREVIOUS) for at least jobs.job_deadline_s, so
-- the callbacks of jobs in flight still verify. Each at least 16 bytes.
-- server_secret          = os.getenv("GENRELAY_SERVER_SECRET")
-- server_secret_previous = os.getenv("GENRELAY_SERVER_SECRET_PREVIOUS")
-- The store's files are created 0600; genrelay refuses to start on a store
-- that group or others may read or write, unless this is true.
-- store_insecure_permissions = false
-- The key of the admin surfaces (GET /v1/scripts), at least 16 bytes.
-- admin_key = os.getenv("GENRELAY_ADMIN_KEY")

providers = {
  fal = {
    base_url = base("https://queue.fal.run", "/fal"),
    key = os.getenv("FAL_KEY") or (sim and "sim-provider-key"),
    jwks_url = base("https://rest.alpha.fal.ai/.well-known/jwks.json", "/fal/.well-known/jwks.json"),
  },
  krea = { base_url = base("https://api.krea.ai", "/krea"), key = os.getenv("KREA_API_TOKEN") or (sim and "sim-provider-key") },
  modelslab = { base_url = base("https://modelslab.com/api/v6", "/modelslab/api/v6"),
                key = os.getenv("MODELSLAB_API_KEY") or (sim and "sim-provider-key") },
  artificialstudio = { base_url = base("https://api.artificialstudio.ai", "/artificialstudio"),
                       key = os.getenv("ARTIFICIALSTUDIO_API_KEY") or (sim and "sim-provider-key") },
  abstrakt = { base_url = base("https://api.abstrakt.one", "/abstrakt"),
               key = os.getenv("ABSTRAKT_API_KEY") or (sim and "sim-provider-key"),
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

webhooks = {
  retry = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 },
  timeout_s = 10,
  -- the demo receiver runs on loopback over plain HTTP
  require_https = sim == nil,
  allow_private = sim ~= nil,
}
