// libopus (Debian libopus-dev). Swift cannot call the variadic *_ctl functions, so the few
// requests the codec uses get fixed-arity wrappers here; nothing else.
#include <opus/opus.h>

static inline int symphony_opus_encoder_set(OpusEncoder *encoder, int request, opus_int32 value) {
    return opus_encoder_ctl(encoder, request, value);
}

static inline int symphony_opus_encoder_get(OpusEncoder *encoder, int request, opus_int32 *value) {
    return opus_encoder_ctl(encoder, request, value);
}

static inline int symphony_opus_decoder_get(OpusDecoder *decoder, int request, opus_int32 *value) {
    return opus_decoder_ctl(decoder, request, value);
}
