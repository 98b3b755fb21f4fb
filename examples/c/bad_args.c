/*
 * bad_args: libhearth's answers to bad input, checked code by code and message by
 * message: NULL arguments and handles, missing and malformed files, invalid UTF-8,
 * handles of the wrong kind, double frees, foreign pointers, a busy/cancelled session,
 * a too-small RAM budget, the assistant's PCM and text calls. Also a full load →
 * tokenize → generate → free cycle, so that valgrind sees every path.
 *
 *   bad_args MODEL HOME.yaml INTENTS.json
 *
 * Prints one line per check; exit status = number of failed checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"

static int failures = 0;

/* Check that `got` is `want` and that the last error contains `needle` (NULL: is empty). */
static void expect(const char *what, hearth_status got, hearth_status want, const char *needle) {
    const char *msg = hearth_last_error();
    int ok = got == want && msg != NULL &&
             (needle == NULL ? msg[0] == '\0' : strstr(msg, needle) != NULL);
    printf("%s %s: status %d (want %d), error \"%s\"\n", ok ? "ok  " : "FAIL", what, (int)got,
           (int)want, msg ? msg : "(null)");
    if (!ok) failures++;
}

static int stop_after_two(const char *piece, size_t len, uint32_t token, void *user) {
    (void)piece; (void)len; (void)token;
    int *n = user;
    return ++*n >= 2;
}

static int cancel_from_callback(const char *piece, size_t len, uint32_t token, void *user) {
    (void)piece; (void)len; (void)token;
    hearth_session_cancel((hearth_session *)user);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL HOME.yaml INTENTS.json\n", argv[0]);
        return 2;
    }
    const char *model = argv[1], *home = argv[2], *data = argv[3];
    hearth_engine *engine = (hearth_engine *)0x1;
    hearth_session *session = NULL, *other = NULL;
    hearth_intents *intents = NULL;
    char *text = NULL;

    /* NULL arguments. */
    expect("load NULL path", hearth_engine_load(NULL, NULL, &engine), HEARTH_ERR_NULL_ARG, "path is NULL");
    if (engine != NULL) { printf("FAIL load NULL path leaves *out set\n"); failures++; }
    expect("load NULL out", hearth_engine_load(model, NULL, NULL), HEARTH_ERR_NULL_ARG, "out is NULL");
    expect("session NULL engine", hearth_session_new(NULL, 0, &session), HEARTH_ERR_NULL_ARG, "hearth_engine is NULL");
    expect("generate NULL session", hearth_generate(NULL, "hi", NULL, NULL, NULL, NULL, NULL), HEARTH_ERR_NULL_ARG, "hearth_session is NULL");
    expect("engine_free NULL", hearth_engine_free(NULL), HEARTH_ERR_NULL_ARG, "is NULL");
    expect("string_free NULL", hearth_string_free(NULL), HEARTH_OK, NULL);
    expect("ids_free NULL", hearth_ids_free(NULL), HEARTH_OK, NULL);

    /* Bad files. */
    expect("load missing file", hearth_engine_load("/nonexistent/model.hearth", NULL, &engine), HEARTH_ERR_IO, "/nonexistent/model.hearth");
    expect("load non-model file", hearth_engine_load(home, NULL, &engine), HEARTH_ERR_FORMAT, "");
    expect("intents missing home", hearth_intents_load(data, "/nonexistent/home.yaml", &intents), HEARTH_ERR_IO, "/nonexistent/home.yaml");

    /* Invalid UTF-8 (0xff never occurs in UTF-8). */
    expect("load non-UTF-8 path", hearth_engine_load("/tmp/\xff.hearth", NULL, &engine), HEARTH_ERR_INVALID_UTF8, "path is not valid UTF-8");

    /* A RAM budget too small for the model: refused up front, with the numbers. */
    hearth_engine_options eo = hearth_engine_options_default();
    eo.threads = 1;
    eo.max_ram_bytes = 64u << 20;
    expect("load over RAM budget", hearth_engine_load(model, &eo, &engine), HEARTH_ERR_INVALID, "not enough RAM");

    /* A real engine and session. */
    eo.max_ram_bytes = 0;
    expect("load", hearth_engine_load(model, &eo, &engine), HEARTH_OK, NULL);
    expect("session ctx too large", hearth_session_new(engine, 1u << 30, &other), HEARTH_ERR_INVALID, "exceeds");
    expect("session", hearth_session_new(engine, 256, &session), HEARTH_OK, NULL);

    /* Handles: foreign pointers and the wrong kind. */
    int local = 0;
    expect("foreign engine", hearth_session_new((hearth_engine *)&local, 0, &other), HEARTH_ERR_INVALID_HANDLE, "not a live handle");
    expect("session as engine", hearth_engine_free((hearth_engine *)session), HEARTH_ERR_INVALID_HANDLE, "not a hearth_engine");
    expect("foreign string free", hearth_string_free((char *)&local), HEARTH_ERR_INVALID_HANDLE, "not a live handle");

    /* Tokenize round trip, and invalid UTF-8 / ids. */
    uint32_t *ids = NULL;
    size_t n = 0;
    expect("tokenize", hearth_tokenize(engine, "Hello, world!", false, &ids, &n), HEARTH_OK, NULL);
    expect("detokenize", hearth_detokenize(engine, ids, n, &text), HEARTH_OK, NULL);
    if (text == NULL || strcmp(text, "Hello, world!") != 0) {
        printf("FAIL round trip gave \"%s\"\n", text ? text : "(null)");
        failures++;
    }
    expect("string_free", hearth_string_free(text), HEARTH_OK, NULL);
    expect("string double free", hearth_string_free(text), HEARTH_ERR_INVALID_HANDLE, "already freed");
    expect("ids_free", hearth_ids_free(ids), HEARTH_OK, NULL);
    expect("ids double free", hearth_ids_free(ids), HEARTH_ERR_INVALID_HANDLE, "already freed");
    expect("tokenize non-UTF-8", hearth_tokenize(engine, "caf\xc3", false, &ids, &n), HEARTH_ERR_INVALID_UTF8, "text is not valid UTF-8 (byte 3)");
    uint32_t bad_ids[2] = {1, 4000000000u};
    expect("detokenize bad id", hearth_detokenize(engine, bad_ids, 2, &text), HEARTH_ERR_INVALID, "outside the vocabulary");
    expect("detokenize NULL ids", hearth_detokenize(engine, NULL, 2, &text), HEARTH_ERR_NULL_ARG, "ids is NULL");

    /* Generation: bad prompt, callback stop, cancel, empty prompt. */
    hearth_generate_options go = hearth_generate_options_default();
    go.max_tokens = 8;
    hearth_generate_result res;
    expect("generate non-UTF-8", hearth_generate(session, "\xe2\x82", &go, NULL, NULL, &text, &res), HEARTH_ERR_INVALID_UTF8, "prompt is not valid UTF-8");
    int count = 0;
    expect("generate, callback stops", hearth_generate(session, "Say hi.", &go, stop_after_two, &count, &text, &res), HEARTH_OK, NULL);
    if (res.stop != HEARTH_STOP_CANCELLED || count != 2) {
        printf("FAIL callback stop: stop %d after %d pieces\n", (int)res.stop, count);
        failures++;
    }
    hearth_string_free(text);
    expect("generate, cancelled", hearth_generate(session, "Say hi.", &go, cancel_from_callback, session, NULL, &res), HEARTH_OK, NULL);
    if (res.stop != HEARTH_STOP_CANCELLED || res.generated_tokens > 8) {
        printf("FAIL cancel: stop %d\n", (int)res.stop);
        failures++;
    }
    go.temperature = -1.0f;
    expect("generate bad temperature", hearth_generate(session, "Say hi.", &go, NULL, NULL, NULL, NULL), HEARTH_ERR_INVALID, "temperature");
    go.temperature = 0.0f;
    go.raw = true;
    expect("generate empty raw prompt", hearth_generate(session, "", &go, NULL, NULL, NULL, NULL), HEARTH_ERR_INVALID, "empty prompt");
    go.raw = false;
    expect("generate", hearth_generate(session, "What is 2+2?", &go, NULL, NULL, &text, &res), HEARTH_OK, NULL);
    if (text == NULL || res.generated_tokens == 0 || strlen(text) == 0) {
        printf("FAIL generate gave no text\n");
        failures++;
    }
    hearth_string_free(text);

    /* Intents. */
    expect("intents", hearth_intents_load(data, home, &intents), HEARTH_OK, NULL);
    expect("intent non-UTF-8", hearth_intent_match(intents, "turn on the \xc0\xaf", &text), HEARTH_ERR_INVALID_UTF8, "text is not valid UTF-8");
    expect("intent as session", hearth_session_free((hearth_session *)intents), HEARTH_ERR_INVALID_HANDLE, "not a hearth_session");

    /* Speech-to-text without a model (or without the feature). */
    hearth_transcriber *tr = NULL;
    if (hearth_has_whisper())
        expect("transcriber missing model", hearth_transcriber_load("/nonexistent/ggml.bin", 1, &tr), HEARTH_ERR_IO, "/nonexistent/ggml.bin");
    else
        expect("transcriber unsupported", hearth_transcriber_load("/nonexistent/ggml.bin", 1, &tr), HEARTH_ERR_UNSUPPORTED, "whisper");
    expect("transcribe NULL handle", hearth_transcribe(NULL, NULL, 0, &text), HEARTH_ERR_NULL_ARG, "hearth_transcriber is NULL");

    /* The assistant: bad paths, then a text-only one (no LLM, no Whisper) on bad input. */
    hearth_assistant *as = NULL;
    char *event = NULL;
    float pcm[160] = {0};
    expect("assistant NULL home", hearth_assistant_load(NULL, NULL, NULL, 1, &as), HEARTH_ERR_NULL_ARG, "home_path is NULL");
    expect("assistant NULL out", hearth_assistant_load(NULL, NULL, home, 1, NULL), HEARTH_ERR_NULL_ARG, "out is NULL");
    expect("assistant missing home", hearth_assistant_load(NULL, NULL, "/nonexistent/home.yaml", 1, &as), HEARTH_ERR_IO, "/nonexistent/home.yaml");
    expect("assistant missing LLM", hearth_assistant_load("/nonexistent/llm.hearth", NULL, home, 1, &as), HEARTH_ERR_IO, "/nonexistent/llm.hearth");
    expect("assistant non-UTF-8 LLM", hearth_assistant_load("/tmp/\xff.hearth", NULL, home, 1, &as), HEARTH_ERR_INVALID_UTF8, "llm_path is not valid UTF-8");
    expect("assistant LLM not a model", hearth_assistant_load(home, NULL, home, 1, &as), HEARTH_ERR_FORMAT, "");
    if (hearth_has_whisper())
        expect("assistant missing Whisper", hearth_assistant_load(NULL, "/nonexistent/ggml.bin", home, 1, &as), HEARTH_ERR_IO, "/nonexistent/ggml.bin");
    else
        expect("assistant Whisper unsupported", hearth_assistant_load(NULL, "/nonexistent/ggml.bin", home, 1, &as), HEARTH_ERR_UNSUPPORTED, "whisper");
    if (as != NULL) { printf("FAIL failed assistant loads leave *out set\n"); failures++; }
    expect("assistant text-only", hearth_assistant_load(NULL, NULL, home, 1, &as), HEARTH_OK, NULL);
    expect("assist_text", hearth_assist_text(as, "turn on the coffee maker", &event), HEARTH_OK, NULL);
    if (event == NULL || strstr(event, "\"intent\":\"HassTurnOn\"") == NULL || strstr(event, "Coffee Maker") == NULL) {
        printf("FAIL assist_text event: %s\n", event ? event : "(null)");
        failures++;
    }
    expect("event string_free", hearth_string_free(event), HEARTH_OK, NULL);
    expect("assist_text non-UTF-8", hearth_assist_text(as, "turn on the \xc0\xaf", &event), HEARTH_ERR_INVALID_UTF8, "text is not valid UTF-8");
    expect("assist_text NULL text", hearth_assist_text(as, NULL, &event), HEARTH_ERR_NULL_ARG, "text is NULL");
    expect("assist_text NULL out", hearth_assist_text(as, "hi", NULL), HEARTH_ERR_NULL_ARG, "event_json is NULL");
    expect("assist_pcm NULL handle", hearth_assist_pcm(NULL, pcm, 160, 16000, &event), HEARTH_ERR_NULL_ARG, "hearth_assistant is NULL");
    expect("assist_pcm intents handle", hearth_assist_pcm((hearth_assistant *)intents, pcm, 160, 16000, &event), HEARTH_ERR_INVALID_HANDLE, "not a hearth_assistant");
    expect("assist_pcm NULL pcm", hearth_assist_pcm(as, NULL, 160, 16000, &event), HEARTH_ERR_NULL_ARG, "pcm is NULL");
    expect("assist_pcm no samples", hearth_assist_pcm(as, pcm, 0, 16000, &event), HEARTH_ERR_INVALID, "no samples");
    expect("assist_pcm rate 0", hearth_assist_pcm(as, pcm, 160, 0, &event), HEARTH_ERR_INVALID, "sample_rate 0 Hz");
    expect("assist_pcm too long", hearth_assist_pcm(as, pcm, (size_t)8000 * 601, 8000, &event), HEARTH_ERR_INVALID, "longer than 600 s");
    expect("assist_pcm without Whisper", hearth_assist_pcm(as, pcm, 160, 16000, &event), HEARTH_ERR_INVALID, "without a Whisper model");
    if (event != NULL) { printf("FAIL failed assist_pcm leaves *event_json set\n"); failures++; }
    expect("assistant_free", hearth_assistant_free(as), HEARTH_OK, NULL);
    expect("assistant double free", hearth_assistant_free(as), HEARTH_ERR_INVALID_HANDLE, "already freed");
    expect("assist_text freed", hearth_assist_text(as, "hi", &event), HEARTH_ERR_INVALID_HANDLE, "not a live handle");

    /* Frees, then double frees. The session outlives its engine. */
    expect("engine_free", hearth_engine_free(engine), HEARTH_OK, NULL);
    expect("generate after engine_free", hearth_generate(session, "Hi", &go, NULL, NULL, NULL, &res), HEARTH_OK, NULL);
    expect("engine double free", hearth_engine_free(engine), HEARTH_ERR_INVALID_HANDLE, "already freed");
    expect("session on freed engine", hearth_session_new(engine, 0, &other), HEARTH_ERR_INVALID_HANDLE, "not a live handle");
    expect("session_free", hearth_session_free(session), HEARTH_OK, NULL);
    expect("session double free", hearth_session_free(session), HEARTH_ERR_INVALID_HANDLE, "already freed");
    expect("cancel freed session", hearth_session_cancel(session), HEARTH_ERR_INVALID_HANDLE, "not a live handle");
    expect("intents_free", hearth_intents_free(intents), HEARTH_OK, NULL);
    expect("intents double free", hearth_intents_free(intents), HEARTH_ERR_INVALID_HANDLE, "already freed");

    printf("bad_args: %d failed\n", failures);
    return failures;
}
