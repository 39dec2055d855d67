-- A Slack incoming-webhook message: {text, blocks}. The first output, when it
-- is an http(s) image, is shown as an image block; other outputs are linked.
local U = require("lib.util")

local ICON = { succeeded = ":white_check_mark:", failed = ":x:", canceled = ":no_entry_sign:" }

-- Slack mrkdwn needs &, < and > escaped.
local function esc(s)
	return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

return {
	transform = function(event, ctx)
		local out = U.val(event.output)
		local items = type(out) == "table" and U.val(out.items) or {}
		local first = type(items) == "table" and type(items[1]) == "table" and items[1] or {}
		local url = type(first.url) == "string" and first.url:match("^https?://") and first.url or nil
		local text = string.format("%s %s %s (%s)", ICON[event.status] or ":information_source:",
			esc(U.val(event.model_id) or "job"), esc(event.status), esc(event.job_id))
		local e = U.val(event.error)
		if type(e) == "table" and U.val(e.message) then
			text = text .. ": " .. esc(e.message)
		elseif url then
			text = text .. ": <" .. esc(url) .. ">"
		end
		local blocks = { { type = "section", text = { type = "mrkdwn", text = text } } }
		if url and first.type == "image" then
			blocks[2] = { type = "image", image_url = url, alt_text = U.val(event.model_id) or "output" }
		end
		return { body = { text = text, blocks = blocks } }
	end,

	examples = {
		{ fn = "transform",
			args = { { type = "job.succeeded", job_id = "job_1", status = "succeeded", model_id = "fal-ai/flux/dev",
				output = { type = "image", items = { { type = "image", url = "https://x/a.png" } } } } },
			expect = { body = { text = ":white_check_mark: fal-ai/flux/dev succeeded (job_1): <https://x/a.png>",
				blocks = { { type = "section" }, { type = "image", image_url = "https://x/a.png" } } } } },
	},
}
