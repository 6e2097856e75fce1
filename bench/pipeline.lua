-- wrk script: HTTP/1.1 pipelining, 16 requests per write.
--
--   wrk -t1 -c64 -d5s -s bench/pipeline.lua http://127.0.0.1:PORT/
--   wrk ... -s bench/pipeline.lua http://127.0.0.1:PORT/ -- 32   (another depth)
--
-- wrk parses the string that request() returns, counts the requests in it
-- and sends the next batch once all of their responses have arrived, so
-- every connection keeps `depth` requests in flight. "N requests" and
-- Requests/sec in wrk's output count single requests (responses), not
-- batches.

local depth = 16
local batch

init = function(args)
   depth = tonumber(args[1]) or depth
   local path = wrk.path ~= "" and wrk.path or "/"
   local r = {}
   for i = 1, depth do
      -- wrk.format(method, path, headers, body); nil = wrk's defaults
      -- (GET, and the Host header taken from the URL).
      r[i] = wrk.format(nil, path)
   end
   batch = table.concat(r)
end

request = function()
   return batch
end
