-- wrk script for bench/run: each connection waits BENCH_DELAY_MS after
-- every response before its next request, so a few connections make a
-- moderate load whose latencies are not dominated by requests queued
-- behind each other (as they are at saturation with 64 connections).
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "2")

delay = function()
  return pause
end
