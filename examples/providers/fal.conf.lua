-- genrelay with fal only: copy, set the environment, run
--   genrelay check --config examples/providers/fal.conf.lua
--   genrelay serve --config examples/providers/fal.conf.lua
-- Keys come from the environment; nothing secret is written here.
-- public_url must be reachable by fal (its callbacks come there): an https
-- address in front of genrelay.

listen     = os.getenv("GENRELAY_LISTEN") or "127.0.0.1:8080"
public_url = os.getenv("GENRELAY_PUBLIC_URL") or "https://genrelay.example.com"
store      = os.getenv("GENRELAY_STORE") or "sqlite:/var/lib/genrelay/genrelay.db"
scripts    = os.getenv("GENRELAY_SCRIPTS") or "scripts"
admin_key  = os.getenv("GENRELAY_ADMIN_KEY")

providers = {
  fal = {
    base_url = "https://queue.fal.run",
    key = os.getenv("FAL_KEY"),                 -- Authorization: Key <FAL_KEY>
    -- fal signs its callbacks with Ed25519; the keys are fetched from here.
    jwks_url = "https://rest.alpha.fal.ai/.well-known/jwks.json",
  },
}

customers = {
  acme = {
    api_key = os.getenv("ACME_API_KEY") or "change-me-acme-key",
    webhook_secret = os.getenv("ACME_WEBHOOK_SECRET") or "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    hook = "default",
  },
}

-- Submit with POST /v1/models/fal-ai/flux/dev (or the alias "image")/run
models = {
  image = { "fal:fal-ai/flux/dev" },
}

webhooks = { retry = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 }, timeout_s = 10 }
