/*
 * assist_pcm: the whole assistant from C on a PCM buffer. Reads a WAV file (16-bit
 * PCM, mono or interleaved channels mixed down, any rate), hands its samples to
 * hearth_assist_pcm and prints the event JSON on one line. Optionally also handles
 * typed text with hearth_assist_text (one more JSON line).
 *
 *   assist_pcm WHISPER.bin HOME.yaml WAV [--llm MODEL] [--text TEXT] [--threads N]
 *
 * WHISPER.bin "-" loads a text-only assistant and skips the PCM call (scripts/test-c runs
 * that under valgrind: whisper.cpp's inference takes over 10 minutes there).
 * Intent templates come from $HEARTH_HOME/intents/en.json (scripts/fetch-models).
 * Exit status 0 on success.
 *
 * Build (x86-64, libhearth.a with the `whisper` feature):
 *   cc -O2 -I capi/include examples/c/assist_pcm.c target/release/libhearth.a \
 *      -lstdc++ -lpthread -ldl -lm -o assist_pcm
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Reads a 16-bit PCM WAV into mono floats in -1..1. Returns the sample count (0 on
 * error, with a message on stderr); *out is malloc'ed, *rate the sample rate. */
static size_t read_wav(const char *path, float **out, uint32_t *rate) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 0; }
    unsigned char hdr[12], ch[8], fmt[16];
    size_t n = 0;
    uint16_t channels = 0, bits = 0;
    *out = NULL;
    if (fread(hdr, 1, 12, f) != 12 || memcmp(hdr, "RIFF", 4) || memcmp(hdr + 8, "WAVE", 4)) {
        fprintf(stderr, "%s: not a WAV file\n", path);
        goto done;
    }
    while (fread(ch, 1, 8, f) == 8) {
        uint32_t size = le32(ch + 4);
        if (!memcmp(ch, "fmt ", 4) && size >= 16) {
            if (fread(fmt, 1, 16, f) != 16) break;
            if (le16(fmt) != 1) { fprintf(stderr, "%s: not integer PCM\n", path); goto done; }
            channels = le16(fmt + 2);
            *rate = le32(fmt + 4);
            bits = le16(fmt + 14);
            if (fseek(f, (long)(size - 16 + (size & 1)), SEEK_CUR)) break;
        } else if (!memcmp(ch, "data", 4)) {
            if (bits != 16 || channels == 0) { fprintf(stderr, "%s: want 16-bit PCM\n", path); goto done; }
            size_t frames = size / (2u * channels);
            int16_t *raw = malloc(frames * channels * sizeof *raw);
            *out = malloc((frames ? frames : 1) * sizeof **out);
            if (!raw || !*out) { free(raw); free(*out); *out = NULL; goto done; }
            frames = fread(raw, 2u * channels, frames, f);
            for (size_t i = 0; i < frames; i++) {
                float s = 0.0f;
                for (uint16_t c = 0; c < channels; c++) s += raw[i * channels + c] / 32768.0f;
                (*out)[i] = s / channels;
            }
            free(raw);
            n = frames;
            goto done;
        } else if (fseek(f, (long)(size + (size & 1)), SEEK_CUR)) {
            break;
        }
    }
    fprintf(stderr, "%s: no 16-bit PCM data chunk\n", path);
done:
    fclose(f);
    return n;
}

static int fail(const char *what, hearth_status st) {
    fprintf(stderr, "assist_pcm: %s failed (status %d): %s\n", what, (int)st, hearth_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s WHISPER.bin HOME.yaml WAV [--llm MODEL] [--text TEXT] [--threads N]\n",
                argv[0]);
        return 2;
    }
    const char *llm = NULL, *text = NULL;
    uint32_t threads = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--llm")) llm = argv[i + 1];
        else if (!strcmp(argv[i], "--text")) text = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = (uint32_t)atoi(argv[i + 1]);
        else { fprintf(stderr, "assist_pcm: unknown option %s\n", argv[i]); return 2; }
    }

    float *pcm = NULL;
    uint32_t rate = 0;
    size_t n = read_wav(argv[3], &pcm, &rate);
    if (n == 0) return 1;

    int audio = strcmp(argv[1], "-") != 0;
    hearth_assistant *assistant = NULL;
    hearth_status st = hearth_assistant_load(llm, audio ? argv[1] : NULL, argv[2], threads, &assistant);
    if (st != HEARTH_OK) { free(pcm); return fail("hearth_assistant_load", st); }

    char *event = NULL;
    if (audio) {
        st = hearth_assist_pcm(assistant, pcm, n, rate, &event);
        if (st != HEARTH_OK) { free(pcm); return fail("hearth_assist_pcm", st); }
        printf("%s\n", event);
        hearth_string_free(event);
    }
    free(pcm);

    if (text) {
        st = hearth_assist_text(assistant, text, &event);
        if (st != HEARTH_OK) return fail("hearth_assist_text", st);
        printf("%s\n", event);
        hearth_string_free(event);
    }

    st = hearth_assistant_free(assistant);
    if (st != HEARTH_OK) return fail("hearth_assistant_free", st);
    return 0;
}
