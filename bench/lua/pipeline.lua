-- Send DEPTH requests back to back on each connection before reading the answers.
local depth = 16
local batch = nil

init = function(args)
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, wrk.path)
   end
   batch = table.concat(r)
end

request = function()
   return batch
end
