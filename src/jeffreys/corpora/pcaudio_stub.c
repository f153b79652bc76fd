/* libpcaudio.so.0 for Debian's libespeak-ng.so.1, which needs it to load: jeffreys
 * synthesises to a callback (AUDIO_OUTPUT_SYNCHRONOUS) and never plays audio, so every entry
 * fails. The real library pulls in PulseAudio and ALSA, which a server may not have. */
#include <stddef.h>

struct audio_object;

struct audio_object *create_audio_device_object(const char *device, const char *app, const char *desc) { return NULL; }
int audio_object_open(struct audio_object *o, int format, unsigned int rate, unsigned char channels) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *data, size_t bytes) { return -1; }
int audio_object_drain(struct audio_object *o) { return -1; }
int audio_object_flush(struct audio_object *o) { return -1; }
const char *audio_object_strerror(struct audio_object *o, int error) { return "jeffreys: no audio output"; }
