# Sourced by run.sh and zero-loss.sh: the two-process setup in which
# dpgate-gen feeds a dpgate over two net_memif ports. dpgate serves the
# sockets (lan 0, wan 1), the generator is their client, sends on lan and
# counts what dpgate forwards out of wan.

# memif_server INDEX DIR RING: the device string of dpgate's port INDEX
# (0 lan, 1 wan), socket in DIR, 2^RING ring slots.
memif_server() {
  local sock=lan.sock
  [ "$1" -eq 0 ] || sock=wan.sock
  echo "net_memif$1,role=server,socket=$2/$sock,socket-abstract=no,rsize=$3,mac=02:00:00:00:0$1:01"
}

# memif_client_args DIR RING: sets memif_client to the generator's EAL
# --vdev options for the client ends, and the options that aim it (out of
# port 0 to dpgate's lan MAC, counting on port 1).
memif_client_args() {
  memif_client=(
    --vdev "net_memif0,role=client,socket=$1/lan.sock,socket-abstract=no,rsize=$2,mac=02:00:00:00:00:02"
    --vdev "net_memif1,role=client,socket=$1/wan.sock,socket-abstract=no,rsize=$2,mac=02:00:00:00:01:02"
  )
  memif_aim=(--tx-port 0 --rx-port 1 --dst-mac 02:00:00:00:00:01)
}

# wait_running LOG PID: until dpgate (PID) logs that it runs, at most 60 s;
# false when it did not (it left, or is still loading).
wait_running() {
  local i
  for i in $(seq 1 600); do
    grep -q "dpgate: running" "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "dpgate: running" "$1" 2>/dev/null
}
