-- The webhook an Artificial Studio handler parses (docs/provider-facts.md, "Artificial Studio"):
-- {id, status = "success" | "error", tool, type, output = <first URL>,
-- thumbnail = null, error, createdAt} with X-Webhook-Source and X-Media-Id.
local U = require("lib.util")

return {
	transform = function(event, ctx)
		local ok = event.status == "succeeded"
		local out = U.val(event.output)
		local items = type(out) == "table" and U.val(out.items) or {}
		local first = type(items) == "table" and type(items[1]) == "table" and items[1] or {}
		local e = U.val(event.error)
		local body = { id = event.job_id, status = ok and "success" or "error", tool = U.val(event.model_id) or ctx.null,
			type = ctx.null, output = ctx.null, thumbnail = ctx.null, error = ctx.null,
			createdAt = U.val(event.created_at) or ctx.null }
		if ok then
			body.type = U.first(first.type, type(out) == "table" and out.type or nil) or ctx.null
			body.output = U.val(first.url) or ctx.null
		else
			body.error = type(e) == "table" and U.val(e.message) or event.status
		end
		return {
			body = body,
			headers = { ["X-Webhook-Source"] = "artificial-studio", ["X-Media-Id"] = event.job_id },
		}
	end,

	examples = {
		{ fn = "transform",
			args = { { type = "job.succeeded", job_id = "job_1", status = "succeeded", model_id = "create-image",
				output = { type = "image", items = { { type = "image", url = "https://x/a.png" } } } } },
			expect = { body = { id = "job_1", status = "success", type = "image", output = "https://x/a.png" },
				headers = { ["X-Webhook-Source"] = "artificial-studio", ["X-Media-Id"] = "job_1" } } },
		{ fn = "transform",
			args = { { type = "job.failed", job_id = "job_1", status = "failed", model_id = "create-image",
				error = { code = "PROVIDER_FAILURE", message = "NSFW" } } },
			expect = { body = { id = "job_1", status = "error", error = "NSFW" } } },
	},
}
