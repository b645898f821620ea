#!/bin/sh
# /init of the linuxnet initramfs (built by build.sh): loads the virtio
# modules, brings eth0 up with chsnap.ip= from the command line (and
# chsnap.ip6= if given, without duplicate address detection), reports what
# the virtio-net driver negotiated, serves TCP port 5000 (each connection's
# bytes are kept in /tmp/rx and reported) and answers commands read from the
# console, one reply line each, whose first word is the command's:
#   feat                  feat mac=M ip=A ip6=A6 features=BITS  (BITS: the virtio
#                         device's /sys features, bit 0 first)
#   stats                 stats rx_packets=N tx_packets=N ... (eth0's counters
#                         from /sys/class/net/eth0/statistics, as NAME=N)
#   tx HOST PORT          sends /tmp/rx to HOST:PORT; tx rc=N bytes=N
#   irqs                  irqs LINE;LINE... (/proc/interrupts' virtio lines)
#   ping HOST             three echo requests from the guest; ping rc=N
#   poweroff              powers off (no reply)
# Anything else gets "error unknown command". Lines it prints unasked:
# linuxnet-ready ..., linuxnet-error ..., rx bytes=N sha256=H.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp

fail() {
	echo "linuxnet-error $*"
	exec sh
}

for m in $(cat /lib/modules/order); do
	insmod "/lib/modules/$m.ko" || fail "insmod $m"
done
ip=$(sed -n 's/.*chsnap\.ip=\([0-9./]*\).*/\1/p' /proc/cmdline)
[ -n "$ip" ] || fail "no chsnap.ip= on the command line"
i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i + 1))
	[ $i -le 100 ] || fail "no eth0 after 10 s: $(ls /sys/bus/virtio/devices 2>&1)"
	sleep 0.1
done
ip link set lo up
ip addr add "$ip" dev eth0 || fail "ip addr add $ip dev eth0"
ip link set eth0 up || fail "ip link set eth0 up"
ip6=$(sed -n 's/.*chsnap\.ip6=\([0-9a-fA-F:/]*\).*/\1/p' /proc/cmdline)
if [ -n "$ip6" ]; then
	echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad
	ip -6 addr add "$ip6" dev eth0 || fail "ip -6 addr add $ip6 dev eth0"
fi

# The features the driver wrote to the net device (device id 1).
features() {
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device")" = 0x0001 ] && cat "$d/features" && return
	done
	echo none
}
feat() {
	echo "mac=$(cat /sys/class/net/eth0/address) ip=$ip ip6=${ip6:-none} features=$(features)"
}

cat >/bin/rxsink <<'EOS'
#!/bin/sh
cat >/tmp/rx
echo "rx bytes=$(wc -c </tmp/rx) sha256=$(sha256sum </tmp/rx | cut -c1-64)" >/dev/console
EOS
chmod 755 /bin/rxsink
: >/tmp/rx
(while :; do nc -l -p 5000 -e /bin/rxsink </dev/null >/dev/null 2>&1; done) &

stats="rx_packets tx_packets rx_bytes tx_bytes rx_errors tx_errors rx_dropped tx_dropped
rx_length_errors rx_frame_errors rx_over_errors rx_fifo_errors tx_fifo_errors"
stty -echo 2>/dev/null
echo "linuxnet-ready $(feat)"
while read -r cmd a b; do
	case "$cmd" in
	"") ;;
	feat) echo "feat $(feat)" ;;
	stats)
		line=stats
		for f in $stats; do
			line="$line $f=$(cat /sys/class/net/eth0/statistics/$f)"
		done
		echo "$line"
		;;
	tx)
		nc "$a" "$b" </tmp/rx >/dev/null
		echo "tx rc=$? bytes=$(wc -c </tmp/rx)"
		;;
	irqs)
		echo "irqs $(grep -i virtio /proc/interrupts | tr -s ' ' | tr '\n' ';')"
		;;
	ping)
		ping -c 3 -W 2 "$a" >/dev/null 2>&1
		echo "ping rc=$?"
		;;
	poweroff) poweroff -f ;;
	*) echo "error unknown command $cmd" ;;
	esac
done
fail "console input ended"
