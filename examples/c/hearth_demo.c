/*
 * hearth_demo: a C program on libhearth.a. Runs one prompt on a model (greedy,
 * streamed through a callback) and, optionally, matches one utterance to an intent.
 *
 *   hearth_demo MODEL PROMPT [N_TOKENS [THREADS]] [--intent DATA.json HOME.yaml UTTERANCE]
 *
 * Prints the generated text and a newline (the same bytes as `hearth run MODEL -p PROMPT
 * -n N_TOKENS` on stdout), then the intent's JSON line. Exit status 0 on success.
 *
 * Build (x86-64, from the repository root, after `cargo build --release -p hearth-capi`):
 *   cc -O2 -I capi/include examples/c/hearth_demo.c target/release/libhearth.a \
 *      -lstdc++ -lpthread -ldl -lm -o hearth_demo
 * (-lstdc++ only when libhearth was built with the `whisper` feature.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"

static int on_token(const char *piece, size_t len, uint32_t token, void *user) {
    (void)token;
    size_t *count = user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    (*count)++;
    return 0; /* nonzero would stop the generation */
}

static int fail(const char *what, hearth_status st) {
    fprintf(stderr, "hearth_demo: %s failed (status %d): %s\n", what, (int)st, hearth_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s MODEL PROMPT [N_TOKENS [THREADS]] [--intent DATA HOME UTTERANCE]\n",
                argv[0]);
        return 2;
    }
    if (hearth_api_version() != HEARTH_API_VERSION) {
        fprintf(stderr, "hearth_demo: header is API %d, library %u\n", HEARTH_API_VERSION,
                hearth_api_version());
        return 1;
    }
    int argi = 3;
    uint32_t n_tokens = 128, threads = 0;
    if (argi < argc && strcmp(argv[argi], "--intent") != 0) n_tokens = (uint32_t)atoi(argv[argi++]);
    if (argi < argc && strcmp(argv[argi], "--intent") != 0) threads = (uint32_t)atoi(argv[argi++]);

    hearth_engine_options eo = hearth_engine_options_default();
    eo.threads = threads;
    hearth_engine *engine = NULL;
    hearth_status st = hearth_engine_load(argv[1], &eo, &engine);
    if (st != HEARTH_OK) return fail("hearth_engine_load", st);

    hearth_session *session = NULL;
    st = hearth_session_new(engine, 0, &session);
    if (st != HEARTH_OK) return fail("hearth_session_new", st);

    hearth_generate_options go = hearth_generate_options_default();
    go.max_tokens = n_tokens;
    size_t pieces = 0;
    char *text = NULL;
    hearth_generate_result res;
    st = hearth_generate(session, argv[2], &go, on_token, &pieces, &text, &res);
    if (st != HEARTH_OK) return fail("hearth_generate", st);
    printf("\n");
    fprintf(stderr, "hearth_demo: %u prompt tokens, %u generated, %zu pieces, stop %d, %zu bytes\n",
            res.prompt_tokens, res.generated_tokens, pieces, (int)res.stop, strlen(text));
    hearth_string_free(text);
    if ((st = hearth_session_free(session)) != HEARTH_OK) return fail("hearth_session_free", st);
    if ((st = hearth_engine_free(engine)) != HEARTH_OK) return fail("hearth_engine_free", st);

    if (argi < argc && strcmp(argv[argi], "--intent") == 0) {
        if (argi + 3 >= argc) {
            fprintf(stderr, "hearth_demo: --intent needs DATA HOME UTTERANCE\n");
            return 2;
        }
        hearth_intents *intents = NULL;
        st = hearth_intents_load(argv[argi + 1], argv[argi + 2], &intents);
        if (st != HEARTH_OK) return fail("hearth_intents_load", st);
        char *json = NULL;
        st = hearth_intent_match(intents, argv[argi + 3], &json);
        if (st != HEARTH_OK) return fail("hearth_intent_match", st);
        printf("%s\n", json);
        hearth_string_free(json);
        if ((st = hearth_intents_free(intents)) != HEARTH_OK) return fail("hearth_intents_free", st);
    }
    return 0;
}
