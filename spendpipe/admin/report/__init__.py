"""`spendpipe report`: one self-contained HTML page of spend, budgets and blocks, for people.

`data.gather` reads everything once (analyst views, budgets, decisions), `page.render` turns it
into HTML with inline SVG charts (`svg`). The page works offline: no script, no font, no
stylesheet or image from elsewhere.
"""
