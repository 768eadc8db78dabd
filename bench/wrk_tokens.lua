-- A fresh token on every request: wrk -s bench/wrk_tokens.lua URL -- TOKENS_FILE
-- TOKENS_FILE holds one JWT per line; they are used in order and wrap around. The table of
-- ready-made header values is built once, so a request costs one table lookup.
local headers = {}
local count = 0
local next_index = 1

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk -s wrk_tokens.lua URL -- TOKENS_FILE")
  end
  for line in io.lines(path) do
    if #line > 0 then
      count = count + 1
      headers[count] = "Bearer " .. line
    end
  end
  if count == 0 then
    error("no tokens in " .. path)
  end
end

function request()
  local value = headers[next_index]
  next_index = next_index % count + 1
  return wrk.format(nil, nil, { ["Authorization"] = value })
end
