import json,collections,statistics as st,sys
f,old,new=sys.argv[1:4]
d=collections.defaultdict(dict)
for l in open(f):
    b,p,js=l.split(' ',2); r=json.loads(js)
    k=(r['workload'],r['write_pct'],r['replicas'],r['threads'],r['mode'],r['paused'])
    d[k].setdefault(b,{}).setdefault(p,[]).append(r['ops_per_sec'])
for k in sorted(d):
    o={p:v[-1] for p,v in d[k][old].items()}; n={p:v[-1] for p,v in d[k][new].items()}
    rat=[n[p]/o[p] for p in o if p in n]
    print(k, 'old %.2fM new %.2fM'%(st.median(o.values())/1e6, st.median(n.values())/1e6), ' '.join('%.2f'%x for x in rat), ' med %.2f'%st.median(rat))
