/*
 * openapi.c: the embedded OpenAPI document. The build generates
 * openapi_json.h from docs/openapi.yaml (tools/openapi/embed.py); a build
 * that does not (the fuzz targets' own project) gets none, and the main build
 * defines GENRELAY_OPENAPI_REQUIRED so that it cannot silently lose it.
 */
#include "openapi.h"

#if defined(__has_include)
#if __has_include("openapi_json.h")
#include "openapi_json.h"
#define HAVE_OPENAPI_JSON 1
#endif
#endif

#if !defined(HAVE_OPENAPI_JSON) && defined(GENRELAY_OPENAPI_REQUIRED)
#error "openapi_json.h was not generated (tools/openapi/embed.py)"
#endif

const char *openapi_json(size_t *len)
{
#ifdef HAVE_OPENAPI_JSON
	*len = GENRELAY_OPENAPI_JSON_LEN;
	return (const char *)genrelay_openapi_json;
#else
	*len = 0;
	return NULL;
#endif
}
