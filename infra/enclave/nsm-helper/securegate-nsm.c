/*
 * securegate-nsm: the enclave's only native code. Reads one CBOR NSM API request from stdin
 * (at most NSM_REQUEST_MAX_SIZE bytes), passes it to the Nitro Secure Module with the raw ioctl
 * and writes the CBOR response to stdout. It interprets nothing: encoding and decoding live in
 * attestation/nsm.ts, where they are unit-tested.
 *
 * ABI from the kernel's include/uapi/linux/nsm.h (drivers/misc/nsm.c, Linux ≥ 6.8; the Nitro
 * Enclaves kernels ship it as a module). The raw ioctl needs CAP_SYS_ADMIN, which the enclave's
 * init process has.
 *
 * Build (static, inside the image): cc -O2 -static -o securegate-nsm securegate-nsm.c
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define NSM_MAGIC 0x0A
#define NSM_REQUEST_MAX_SIZE 0x1000
#define NSM_RESPONSE_MAX_SIZE 0x3000

struct nsm_iovec {
  uint64_t addr;
  uint64_t len;
};

struct nsm_raw {
  struct nsm_iovec request;
  struct nsm_iovec response;
};

#define NSM_IOCTL_RAW _IOWR(NSM_MAGIC, 0x0, struct nsm_raw)

static uint8_t request[NSM_REQUEST_MAX_SIZE];
static uint8_t response[NSM_RESPONSE_MAX_SIZE];

int main(void) {
  size_t length = 0;
  for (;;) {
    if (length == sizeof request) {
      uint8_t extra;
      if (read(0, &extra, 1) > 0) {
        fputs("securegate-nsm: request larger than NSM_REQUEST_MAX_SIZE\n", stderr);
        return 2;
      }
      break;
    }
    ssize_t n = read(0, request + length, sizeof request - length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("securegate-nsm: read");
      return 1;
    }
    if (n == 0) break;
    length += (size_t)n;
  }
  if (length == 0) {
    fputs("securegate-nsm: empty request\n", stderr);
    return 2;
  }
  int fd = open("/dev/nsm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    perror("securegate-nsm: open /dev/nsm");
    return 1;
  }
  struct nsm_raw raw = {
      .request = {.addr = (uint64_t)(uintptr_t)request, .len = length},
      .response = {.addr = (uint64_t)(uintptr_t)response, .len = sizeof response},
  };
  if (ioctl(fd, NSM_IOCTL_RAW, &raw) < 0) {
    perror("securegate-nsm: ioctl NSM_IOCTL_RAW");
    close(fd);
    return 1;
  }
  close(fd);
  /* The driver writes the response length back into response.len. */
  size_t written = 0;
  while (written < raw.response.len) {
    ssize_t n = write(1, response + written, raw.response.len - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("securegate-nsm: write");
      return 1;
    }
    written += (size_t)n;
  }
  return 0;
}
