-- genrelay with ModelsLab only: copy, set the environment, run
--   genrelay check --config examples/providers/modelslab.conf.lua
--   genrelay serve --config examples/providers/modelslab.conf.lua
-- Keys come from the environment; nothing secret is written here.
-- public_url must be reachable by ModelsLab (its callbacks come there): an https
-- address in front of genrelay.

listen     = os.getenv("GENRELAY_LISTEN") or "127.0.0.1:8080"
public_url = os.getenv("GENRELAY_PUBLIC_URL") or "https://genrelay.example.com"
store      = os.getenv("GENRELAY_STORE") or "sqlite:/var/lib/genrelay/genrelay.db"
scripts    = os.getenv("GENRELAY_SCRIPTS") or "scripts"
admin_key  = os.getenv("GENRELAY_ADMIN_KEY")

providers = {
  modelslab = {
    base_url = "https://modelslab.com/api/v6",
    key = os.getenv("MODELSLAB_API_KEY"),       -- sent in the body as "key"
  },
}

customers = {
  acme = {
    api_key = os.getenv("ACME_API_KEY") or "change-me-acme-key",
    webhook_secret = os.getenv("ACME_WEBHOOK_SECRET") or "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    hook = "default",
  },
}

-- Submit with POST /v1/models/modelslab:images/text2img (ModelsLab model_id in the input)/run
models = {
  image = { "modelslab:images/text2img" },
}

webhooks = { retry = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 }, timeout_s = 10 }
