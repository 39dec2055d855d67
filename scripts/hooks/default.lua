-- The default webhook body: the job object exactly as the core built it.
return {
	transform = function(event, ctx)
		return { body = event }
	end,

	examples = {
		{ fn = "transform",
			args = { { type = "job.succeeded", job_id = "job_1", status = "succeeded", model_id = "m",
				output = { type = "image", items = { { type = "image", url = "https://x/a.png" } } } } },
			expect = { body = { type = "job.succeeded", job_id = "job_1", status = "succeeded",
				output = { items = { { url = "https://x/a.png" } } } } } },
	},
}
