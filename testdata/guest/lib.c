/*
 * lib.c: freestanding string, formatting and parsing helpers. Used from both
 * rings; nothing here touches hardware.
 */
#include "guest.h"

void *memset(void *d, int c, usize n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, usize n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

void *memmove(void *d, const void *s, usize n)
{
	u8 *p = d;
	const u8 *q = s;
	if (p < q) {
		while (n--)
			*p++ = *q++;
	} else {
		while (n--)
			p[n] = q[n];
	}
	return d;
}

int memcmp(const void *a, const void *b, usize n)
{
	const u8 *p = a, *q = b;
	for (usize i = 0; i < n; i++)
		if (p[i] != q[i])
			return p[i] < q[i] ? -1 : 1;
	return 0;
}

usize strlen(const char *s)
{
	usize n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (u8)*a - (u8)*b;
}

struct out {
	char *buf;
	usize size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_u64(struct out *o, u64 v, u32 base, int prefix)
{
	char tmp[24];
	int n = 0;
	if (prefix) {
		put(o, '0');
		put(o, 'x');
	}
	do {
		u32 d = (u32)(v % base);
		tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	while (n)
		put(o, tmp[--n]);
}

/*
 * vfmt formats into buf (always NUL-terminated when size > 0) and returns
 * the length written, excluding the NUL. Conversions: %s, %c, %u and %d
 * (64-bit), %x (64-bit, with 0x), %%. All integer arguments are 64-bit.
 */
int vfmt(char *buf, usize size, const char *f, va_list ap)
{
	struct out o = { buf, size, 0 };
	for (; *f; f++) {
		if (*f != '%') {
			put(&o, *f);
			continue;
		}
		switch (*++f) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			while (*s)
				put(&o, *s++);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 'u':
			put_u64(&o, va_arg(ap, u64), 10, 0);
			break;
		case 'd': {
			i64 v = va_arg(ap, i64);
			if (v < 0) {
				put(&o, '-');
				put_u64(&o, (u64)-v, 10, 0);
			} else {
				put_u64(&o, (u64)v, 10, 0);
			}
			break;
		}
		case 'x':
			put_u64(&o, va_arg(ap, u64), 16, 1);
			break;
		case '%':
			put(&o, '%');
			break;
		case 0:
			f--;
			break;
		default:
			put(&o, '%');
			put(&o, *f);
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return (int)(o.len < size ? o.len : (size ? size - 1 : 0));
}

int fmt(char *buf, usize size, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vfmt(buf, size, f, ap);
	va_end(ap);
	return n;
}

/*
 * parse_u64 parses a whole string as decimal or 0x-prefixed hex. It returns
 * 0 on success, -1 on an empty string, a bad digit or overflow.
 */
int parse_u64(const char *s, u64 *out)
{
	u32 base = 10;
	u64 v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		u32 d;
		if (*s >= '0' && *s <= '9')
			d = (u32)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (u32)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (u32)(*s - 'A' + 10);
		else
			return -1;
		if (v > (~0ul - d) / base)
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}
