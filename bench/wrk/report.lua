-- wrk script for bench/http.py: an optional JSON POST body (NETFIT_WRK_BODY), and one JSON
-- line at the end with what the section reports (latencies in microseconds).
local body = os.getenv("NETFIT_WRK_BODY")
if body and #body > 0 then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nNETFIT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
