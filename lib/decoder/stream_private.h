/* What the library's own tools use of the stream reader beyond nntm/nntm_stream.h. */
#ifndef NNTM_DECODER_STREAM_PRIVATE_H
#define NNTM_DECODER_STREAM_PRIVATE_H

#include "nntm/nntm_stream.h"

/* nntm_stream_open_file without the stream MD5 [1.6] (nntm_stream_check then returns -1):
 * for a second stream object over a file whose first one checks it (nntm-dec's workers),
 * so that the whole stream is hashed once, not once a worker. */
int nntm_stream_open_file_unhashed(nntm_stream **out, const char *path,
                                   const nntm_stream_settings *settings);

#endif
