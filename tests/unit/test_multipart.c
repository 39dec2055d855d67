/* tests for core/multipart.c: multipart/form-data into fields and files */
#include "check.h"
#include "multipart.h"

#include <string.h>

static int parse(const char *ct, const char *body, size_t len, json_t **form, json_t **files)
{
	char why[128];
	*form = json_object();
	*files = json_array();
	return multipart_parse(ct, body, len, *form, *files, why, sizeof why);
}

int main(void)
{
	json_t *form, *files;
	static const char ok[] =
		"preamble\r\n--XyZ\r\n"
		"Content-Disposition: form-data; name=\"model\"\r\n\r\n"
		"flux-any\r\n"
		"--XyZ\r\n"
		"Content-Disposition: form-data; name=\"prompt\"\r\n\r\n"
		"a cat --XyZ not a boundary\r\n"
		"--XyZ\r\n"
		"Content-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\r\n"
		"Content-Type: image/png\r\n\r\n"
		"\x89PNG\0\x01\r\n"
		"--XyZ--\r\n";
	CHECK(parse("multipart/form-data; boundary=XyZ", ok, sizeof ok - 1, &form, &files) == 0);
	CHECK_STR_EQ(json_string_value(json_object_get(form, "model")), "flux-any");
	CHECK_STR_EQ(json_string_value(json_object_get(form, "prompt")), "a cat --XyZ not a boundary");
	CHECK_EQ_INT((int)json_array_size(files), 1);
	json_t *f = json_array_get(files, 0);
	CHECK_STR_EQ(json_string_value(json_object_get(f, "field")), "image[]");
	CHECK_STR_EQ(json_string_value(json_object_get(f, "filename")), "a.png");
	CHECK_STR_EQ(json_string_value(json_object_get(f, "content_type")), "image/png");
	CHECK_EQ_INT((int)json_integer_value(json_object_get(f, "size")), 6);
	CHECK_STR_EQ(json_string_value(json_object_get(f, "data_url")), "data:image/png;base64,iVBORwAB");
	json_decref(form);
	json_decref(files);

	/* quoted boundary */
	static const char q[] = "--a b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--a b--";
	CHECK(parse("multipart/form-data; boundary=\"a b\"", q, sizeof q - 1, &form, &files) == 0);
	CHECK_STR_EQ(json_string_value(json_object_get(form, "x")), "1");
	json_decref(form);
	json_decref(files);

	/* refused: no boundary, no delimiter, truncated, nameless part, too many parts */
	const char *bad[] = {
		"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
		"nothing here",
		"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n",
		"--x\r\nContent-Type: text/plain\r\n\r\nv\r\n--x--",
		"--x",
		"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(parse("multipart/form-data; boundary=x", bad[i], strlen(bad[i]), &form, &files) < 0);
		json_decref(form);
		json_decref(files);
	}
	CHECK(parse("multipart/form-data", "--x--", 5, &form, &files) < 0);
	json_decref(form);
	json_decref(files);
	char many[4096];
	size_t n = 0;
	for (int i = 0; i < MULTIPART_PARTS_MAX + 1; i++)
		n += (size_t)snprintf(many + n, sizeof many - n,
				      "--x\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n", i);
	n += (size_t)snprintf(many + n, sizeof many - n, "--x--");
	CHECK(parse("multipart/form-data; boundary=x", many, n, &form, &files) < 0);
	json_decref(form);
	json_decref(files);
	return check_done();
}
