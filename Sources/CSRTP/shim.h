// libsrtp2 (Debian libsrtp2-dev), exposed as is.
#include <srtp2/srtp.h>
