/*
 * modelid.h: the one grammar of model ids (run URLs, alias targets).
 *
 *   id       = [provider ":"] path [":" version]
 *   provider = 1*64 (ALPHA / DIGIT / "_")          (a provider script's name)
 *   path     = segment *("/" segment)
 *   segment  = 1*(ALPHA / DIGIT / "-" / "_" / ".")  but not "." or ".."
 *   version  = 1*(ALPHA / DIGIT / "-" / "_" / ".")
 *
 * The first ':' ends a provider prefix only when the text before it has no
 * '/': "replicate:owner/name:v1" is provider replicate, model
 * "owner/name:v1"; "owner/name:v1" has no prefix (it is routed by the
 * providers' patterns as a whole); "name:v1" is provider "name", model "v1".
 * Every character allowed is unreserved in a URL, so the model can be put in
 * a provider URL as it is: no '%', '?', '#', '\\', empty or dot segments.
 * At most MODELID_MAX bytes in all.
 */
#ifndef GENRELAY_MODELID_H
#define GENRELAY_MODELID_H

#include <stddef.h>

#define MODELID_MAX 256

struct modelid {
	char provider[65]; /* "" when the id has no provider prefix */
	const char *model; /* borrowed: the part after the prefix, into the id */
	const char *version; /* borrowed: the text after the version ':', or NULL */
};

/* Parses id into *out (pointers into id). 0, or -1 with the reason in why. */
int modelid_parse(const char *id, struct modelid *out, char *why, size_t whylen);

#endif
